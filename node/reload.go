package node

import (
	"errors"
	"fmt"
)

// ErrClosed is Reload's error once Close has begun.
var ErrClosed = errors.New("node: closed")

// Reload rereads what the node keeps in files and can change without a
// restart; cmd/pushring calls it on SIGHUP. Each step that fails is
// logged and leaves its running values in place (a half-edited file
// never takes a working secret away); the error joins the failures.
func (n *Node) Reload() error {
	n.reloadMu.Lock() // one reload at a time: steps read and swap state
	defer n.reloadMu.Unlock()
	if n.closing.Load() {
		return ErrClosed
	}
	var errs []error
	for _, step := range []struct {
		name string
		run  func() error
	}{
		{"admin keys", n.reloadAdminKeys},
		{"gossip keys", n.reloadGossipKeys},
		{"NATS authorized keys", n.reloadNATSAuth},
		{"TLS certificates", n.reloadTLS},
	} {
		if err := step.run(); err != nil {
			n.log.Error("reload failed", "step", step.name, "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", step.name, err))
		}
	}
	if len(errs) == 0 {
		n.log.Info("reloaded")
	}
	return errors.Join(errs...)
}
