package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/pushring/pushring/internal/natsauth"
)

// cmdNATSConfig prints the authorization block of an external
// nats-server that gives each node the permissions the embedded server
// gives it, so a NATS cluster run by operators enforces the same table.
func cmdNATSConfig(_ context.Context, c *cli, args []string) error {
	fs := c.flags("nats-config")
	cluster := fs.String("cluster", "pushring", "cluster name (pushring --cluster)")
	keysFile := fs.String("authorized-keys-file", "", `file of "<node-id> <public-nkey>" lines`)
	var lines []string
	fs.Func("node", "a node, <node-id>=<public-nkey> (repeatable)", func(v string) error {
		id, pub, ok := strings.Cut(v, "=")
		if !ok {
			return fmt.Errorf("want <node-id>=<public-nkey>, got %q", v)
		}
		lines = append(lines, id+" "+pub)
		return nil
	})
	if _, err := c.parse(fs, args, 0, 0); err != nil {
		return err
	}
	if !natsauth.ValidCluster(*cluster) {
		// The name becomes part of every subject of the permissions.
		return usagef("--cluster %q must be 1 to 200 of A-Z, a-z, 0-9, '_' and '-'", *cluster)
	}
	if *keysFile != "" {
		b, err := os.ReadFile(*keysFile)
		if err != nil {
			return err
		}
		lines = append(lines, string(b))
	}
	if len(lines) == 0 {
		return usagef("no node: give --node <node-id>=<public-nkey> or --authorized-keys-file")
	}
	keys, err := natsauth.ParseAuthorizedKeys(strings.NewReader(strings.Join(lines, "\n")))
	if err != nil {
		return usagef("%v", err)
	}
	fmt.Fprint(c.stdout, natsauth.Config(*cluster, keys))
	return nil
}

// cmdNATSKey makes a node's NATS nkey seed file before the node's first
// start (mode 0600, an existing file is kept) and prints its public key,
// for the authorized-keys file of the node that runs NATS.
func cmdNATSKey(_ context.Context, c *cli, args []string) error {
	pos, err := c.parse(c.flags("nats-key"), args, 1, 1)
	if err != nil {
		return err
	}
	kp, _, err := natsauth.LoadOrCreateSeed(pos[0])
	if err != nil {
		return err
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, pub)
	return nil
}
