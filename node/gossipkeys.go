package node

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/pushring/pushring/internal/secretfile"
)

// gossipKeys returns the keys the node gossips with: GossipKeyFile's,
// else Membership.Keys. A file it cannot use is a config error.
func (c Config) gossipKeys() ([][]byte, error) {
	if c.GossipKeyFile == "" {
		return c.Membership.Keys, nil
	}
	keys, err := readGossipKeys(c.GossipKeyFile)
	if err != nil {
		return nil, check.New("GossipKeyFile: %v", err)
	}
	return keys, nil
}

// checkGossipExposure refuses gossip in clear where another host may
// reach it: anyone who can would join the cluster, take a share of the
// ring and have its MQTT addresses handed to clients at login.
func (c Config) checkGossipExposure(haveKey bool) error {
	if haveKey || c.InsecureGossip || !c.gossipExposed() {
		return nil
	}
	if !loopbackAddr(c.GossipAddr) {
		return check.New("GossipAddr %q is not a loopback address and no gossip key is set: set GossipKeyFile (anyone who reaches the gossip port could join the cluster), or InsecureGossip to accept that", c.GossipAddr)
	}
	return check.New("Join is set and no gossip key is set: set GossipKeyFile on every node (anyone who reaches the gossip port could join the cluster), or InsecureGossip to accept that")
}

// gossipExposed reports whether the gossip of c reaches beyond this host
// or joins others: where a key is required unless InsecureGossip.
func (c Config) gossipExposed() bool { return !loopbackAddr(c.GossipAddr) || len(c.Join) > 0 }

// loopbackAddr reports whether host:port binds loopback only: a loopback
// IP or "localhost". An empty host binds every interface, and another
// name may resolve to anything, so neither counts.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// maxKeyFile bounds what readGossipKeys reads of a key file.
const maxKeyFile = 64 << 10

// readGossipKeys reads a gossip key file (see Config.GossipKeyFile).
// Errors name the line, never its content: it is a secret.
func readGossipKeys(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// A key file is a few lines; a wrong path (a device, a huge file) is
	// cut short rather than read whole.
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile))
	if err != nil {
		return nil, err
	}
	keys, err := parseGossipKeys(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return keys, nil
}

// parseGossipKeys decodes the keys of a key file, in order.
func parseGossipKeys(data []byte) ([][]byte, error) {
	var keys [][]byte
	lines := make([]int, 0, 2) // line number of each key
	for i, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		k, err := decodeKey(string(line))
		if err != nil {
			return nil, fmt.Errorf("line %d: not base64", i+1)
		}
		switch len(k) {
		case 16, 24, 32:
		default:
			return nil, fmt.Errorf("line %d: a key of %d bytes, want 16, 24 or 32", i+1, len(k))
		}
		for j, prev := range keys {
			if bytes.Equal(prev, k) {
				return nil, fmt.Errorf("line %d repeats the key of line %d", i+1, lines[j])
			}
		}
		keys, lines = append(keys, k), append(lines, i+1)
	}
	if len(keys) == 0 {
		return nil, errors.New("no key in the file")
	}
	return keys, nil
}

// decodeKey accepts base64 in the standard or URL alphabet, padded or not.
func decodeKey(s string) ([]byte, error) {
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		var k []byte
		if k, err = enc.DecodeString(s); err == nil {
			return k, nil
		}
	}
	return nil, err
}

// warnGossip logs, at every start, what leaves gossip open: no key where
// one is required (InsecureGossip), or a key file others may read.
func (n *Node) warnGossip(haveKey bool) {
	if !haveKey && n.cfg.gossipExposed() {
		n.log.Warn("gossip is neither encrypted nor authenticated (InsecureGossip): anyone who reaches the gossip address can join the cluster, take a share of the ring and receive clients",
			"gossip_addr", n.cfg.GossipAddr, "join", n.cfg.Join)
	}
	n.warnKeyFileMode()
}

// warnKeyFileMode warns when the key file is open to group or others.
func (n *Node) warnKeyFileMode() {
	if n.cfg.GossipKeyFile == "" {
		return
	}
	if secretfile.Loose(n.cfg.GossipKeyFile) {
		n.log.Warn("gossip key file is readable by other users than its owner: chmod 600 it",
			"file", n.cfg.GossipKeyFile)
	}
}

// reloadGossipKeys rereads GossipKeyFile and installs its keys (the first
// one encrypts). Without a key file there is nothing to reload.
func (n *Node) reloadGossipKeys() error {
	if n.cfg.GossipKeyFile == "" || n.cluster == nil {
		return nil
	}
	keys, err := readGossipKeys(n.cfg.GossipKeyFile)
	if err != nil {
		return fmt.Errorf("node: gossip keys: %w", err)
	}
	n.warnKeyFileMode()
	return n.cluster.SetKeys(keys)
}
