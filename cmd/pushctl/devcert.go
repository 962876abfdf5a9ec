package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/pushring/pushring/internal/certs"
)

// deviceList is a repeatable --device flag.
type deviceList []string

func (d *deviceList) String() string { return strings.Join(*d, ",") }

func (d *deviceList) Set(v string) error {
	*d = append(*d, v)
	return nil
}

// cmdDevCert writes a throwaway CA, a server certificate for the loopback
// names and optional device certificates under <dir>/tls, for local use
// of MQTT over TLS, HTTPS and device certificates. It talks to no node.
// Its flags are its own: --device here names a certificate to make, not
// the global device login.
func cmdDevCert(_ context.Context, c *cli, args []string) error {
	fs := flag.NewFlagSet("dev-cert", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("dir", "./data", "the node's data directory; files go to <dir>/tls")
	var devices deviceList
	fs.Var(&devices, "device", "also write a client certificate for this device id (CN = id); repeatable")
	if _, err := c.parse(fs, args, 0, 0); err != nil {
		return err
	}
	for _, id := range devices {
		if id == "" || strings.ContainsAny(id, `/\`) || id == "." || id == ".." {
			return usagef("--device %q is not a device id", id)
		}
	}
	out, err := certs.WriteDev(filepath.Join(*dir, "tls"), devices)
	if err != nil {
		return err
	}
	w := c.stdout
	fmt.Fprintf(w, "wrote a throwaway CA and certificates (ECDSA P-256, valid %d days, until %s) to %s:\n",
		int(certs.DevValidity/(24*time.Hour)), time.Now().Add(certs.DevValidity).UTC().Format(time.DateOnly), out.Dir)
	fmt.Fprintf(w, "  %s  CA certificate: clients trust it (--cafile), the node verifies devices with it (--client-ca)\n", out.CACert)
	fmt.Fprintf(w, "  %s  CA key (keep it, or delete it: only needed to issue more)\n", out.CAKey)
	fmt.Fprintf(w, "  %s, %s  server certificate for %s\n", out.ServerCert, out.ServerKey, strings.Join(certs.DevHosts, ", "))
	for _, id := range devices {
		fmt.Fprintf(w, "  %s, %s  client certificate of device %s\n", out.Devices[id][0], out.Devices[id][1], id)
	}
	fmt.Fprintf(w, "\nstart the node with:\n  pushring --data-dir %s --tls-cert %s --tls-key %s --client-ca %s\n",
		*dir, out.ServerCert, out.ServerKey, out.CACert)
	fmt.Fprintf(w, "\nthen (MQTT over TLS on :8883, HTTPS on :8443):\n")
	fmt.Fprintf(w, "  mosquitto_sub -h 127.0.0.1 -p 8883 --cafile %s -u <id> -P <token> -t '/group/<gid>'\n", out.CACert)
	if len(devices) > 0 {
		d := out.Devices[devices[0]]
		fmt.Fprintf(w, "  mosquitto_pub -h 127.0.0.1 -p 8883 --cafile %s --cert %s --key %s -t '/group/<gid>' -m hello\n",
			out.CACert, d[0], d[1])
	}
	fmt.Fprintf(w, "  curl --cacert %s https://127.0.0.1:8443/healthz\n", out.CACert)
	return nil
}
