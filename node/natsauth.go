package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushring/pushring/internal/lograte"
	"github.com/pushring/pushring/internal/natsauth"
	"github.com/pushring/pushring/internal/natsembed"
	"github.com/pushring/pushring/internal/secretfile"
)

// natsNKeyFile is where this node's nkey seed is kept.
func (c Config) natsNKeyFile() string {
	if c.NATSNKeyFile != "" {
		return c.NATSNKeyFile
	}
	return filepath.Join(c.DataDir, "nats.nk")
}

// connectNATS starts the embedded server (unless NATSURL names others)
// and opens the node's connection, signed in with the node's own
// credentials.
func (n *Node) connectNATS() error {
	cfg := n.cfg
	opts := n.natsOptions()
	if cfg.NATSURL == "" {
		kp, err := n.loadNKey()
		if err != nil {
			return err
		}
		users, err := n.natsUsers()
		if err != nil {
			return err
		}
		n.embedded, err = natsembed.Start(natsembed.Config{
			StoreDir:        filepath.Join(cfg.DataDir, "nats"),
			Listen:          cfg.NATSListen,
			ServerName:      cfg.NodeID,
			Users:           users,
			TLSCertFile:     cfg.NATSTLSCert,
			TLSKeyFile:      cfg.NATSTLSKey,
			TLSClientCAFile: cfg.NATSTLSClientCA,
			OnRefusal:       newRefusalLog(n.log, n.registry).refused,
		})
		if err != nil {
			return err
		}
		if cfg.NATSListen != "" && cfg.NATSTLSCert == "" && !loopbackAddr(cfg.NATSListen) {
			// Not refused: a private network or a tunnel may protect it.
			n.log.Warn("embedded NATS listens in plaintext on a non-loopback address: payloads, sessions and password hashes cross the network in clear; set --nats-tls-cert and --nats-tls-key",
				"addr", cfg.NATSListen)
		}
		if n.embedded.Addr() != nil {
			n.log.Info("embedded NATS server listening: nodes sign in with an authorized nkey",
				"addr", n.embedded.ClientURL(), "authorized_keys", len(users), "tls", cfg.NATSTLSCert != "",
				"client_certs", cfg.NATSTLSClientCA != "")
		}
		if n.nc, err = n.embedded.Connect(append(opts, nats.Nkey(n.natsPub, kp.Sign))...); err != nil {
			return fmt.Errorf("node: connect to NATS: %w", err)
		}
		return nil
	}

	if cfg.NATSCA != "" {
		opts = append(opts, nats.RootCAs(cfg.NATSCA))
	}
	if cfg.NATSCert != "" {
		opts = append(opts, nats.ClientCert(cfg.NATSCert, cfg.NATSKey))
	}
	var signIn []nats.Option
	switch redacted, secret := urlSecrets(cfg.NATSURL); {
	case secret:
		n.log.Warn("secret on the command line: the NATS URL holds a password or token, readable by every local user; use --nats-nkey-file or --nats-creds-file",
			"url", redacted)
	case cfg.NATSCredsFile != "":
		signIn = append(signIn, nats.UserCredentials(cfg.NATSCredsFile))
	default:
		kp, err := n.loadNKey()
		if err != nil {
			return err
		}
		signIn = append(signIn, nats.Nkey(n.natsPub, kp.Sign))
	}
	var err error
	n.nc, err = nats.Connect(cfg.NATSURL, append(opts, signIn...)...)
	if errors.Is(err, nats.ErrNkeysNotSupported) && cfg.NATSCredsFile == "" {
		// A NATS server without authorization asks for no signature; it
		// lets in anyone who can reach it.
		if !cfg.InsecureNATS {
			return fmt.Errorf("node: the NATS server at %s has no authorization, so anyone who reaches it reads and forges all traffic: give it users (pushctl nats-config) or set InsecureNATS (--insecure-nats) for development",
				urlSecretsRedacted(cfg.NATSURL))
		}
		n.log.Warn("the NATS server has no authorization: any client that reaches it can read and forge pushring's traffic",
			"url", urlSecretsRedacted(cfg.NATSURL))
		n.natsPub = ""
		n.nc, err = nats.Connect(cfg.NATSURL, opts...)
	}
	if err != nil {
		return fmt.Errorf("node: connect to NATS: %w", err)
	}
	return nil
}

// loadNKey reads (or on first start creates) this node's nkey seed and
// logs its public key, which other nodes' authorized-keys files and an
// external server's config name.
func (n *Node) loadNKey() (nkeys.KeyPair, error) {
	path := n.cfg.natsNKeyFile()
	kp, created, err := natsauth.LoadOrCreateSeed(path)
	if err != nil {
		return nil, fmt.Errorf("node: NATS nkey: %w", err)
	}
	if n.natsPub, err = kp.PublicKey(); err != nil {
		return nil, fmt.Errorf("node: NATS nkey: %w", err)
	}
	if created {
		n.log.Info("NATS nkey generated", "file", path, "public_key", n.natsPub)
	} else {
		n.log.Info("NATS nkey loaded", "file", path, "public_key", n.natsPub)
		if secretfile.Loose(path) {
			n.log.Warn("NATS nkey file is readable by other users", "file", path)
		}
	}
	return kp, nil
}

// natsUsers are the embedded server's users: this node, then the nodes
// of NATSAuthorizedKeysFile, each with the permissions of its node id.
func (n *Node) natsUsers() ([]natsembed.User, error) {
	self := natsauth.Key{NodeID: n.cfg.NodeID, PublicKey: n.natsPub}
	keys := []natsauth.Key{self}
	if path := n.cfg.NATSAuthorizedKeysFile; path != "" {
		listed, err := natsauth.ReadAuthorizedKeys(path)
		if err != nil {
			return nil, fmt.Errorf("node: NATS authorized keys: %w", err)
		}
		for _, k := range listed {
			switch {
			case k == self:
				continue
			case k.NodeID == self.NodeID:
				return nil, fmt.Errorf("node: NATS authorized keys: %s lists this node (%s) with another key than its own %s",
					path, self.NodeID, self.PublicKey)
			case k.PublicKey == self.PublicKey:
				return nil, fmt.Errorf("node: NATS authorized keys: %s lists this node's key for node %s", path, k.NodeID)
			}
			keys = append(keys, k)
		}
	}
	users := make([]natsembed.User, len(keys))
	for i, k := range keys {
		p := natsauth.NodePermissions(n.cfg.Cluster, k.NodeID)
		users[i] = natsembed.User{PublicKey: k.PublicKey, Permissions: &p}
	}
	return users, nil
}

// reloadNATSAuth re-reads NATSAuthorizedKeysFile into the embedded
// server: a node whose key left the file is disconnected at once and
// refused from then on; the others stay connected. A file that does not
// parse changes nothing.
func (n *Node) reloadNATSAuth() error {
	if n.embedded == nil || n.natsPub == "" {
		return nil
	}
	users, err := n.natsUsers()
	if err != nil {
		return err
	}
	if err := n.embedded.SetUsers(users); err != nil {
		return err
	}
	n.log.Info("NATS authorized keys reloaded", "authorized_keys", len(users))
	return nil
}

// urlSecrets reports whether a comma-separated list of NATS URLs holds a
// user, password or token, and returns the list with every such secret
// replaced, fit to log.
func urlSecrets(urls string) (redacted string, secret bool) {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil {
			// Unparsable: nats.Connect will say so; never echo it.
			parts[i], secret = "<unparsable URL>", secret || strings.Contains(p, "@")
			continue
		}
		if u.User != nil {
			secret = true
			u.User = url.User("REDACTED")
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ","), secret
}

func urlSecretsRedacted(urls string) string {
	r, _ := urlSecrets(urls)
	return r
}

// refusalLog counts the clients the embedded NATS server refuses, by
// reason, and logs them at most once a minute per reason, so a flood of
// bad keys or forbidden subjects cannot flood the log.
type refusalLog struct {
	log *slog.Logger
	// Both fixed at creation, one entry per reason: read without a lock.
	counts map[string]prometheus.Counter
	lines  map[string]*lograte.Limiter
}

// refusalLogEvery is how often at most one refusal of a reason is logged.
const refusalLogEvery = time.Minute

func newRefusalLog(log *slog.Logger, reg prometheus.Registerer) *refusalLog {
	r := &refusalLog{log: log, counts: map[string]prometheus.Counter{}, lines: map[string]*lograte.Limiter{}}
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushring_nats_refusals_total",
		Help: "Clients the embedded NATS server refused, by reason: authentication (unknown or revoked key), permission (a subject outside the client's permissions), tls (failed handshake).",
	}, []string{"reason"})
	for _, reason := range []string{natsembed.RefusedAuth, natsembed.RefusedPermission, natsembed.RefusedTLS} {
		r.counts[reason] = vec.WithLabelValues(reason)
		r.lines[reason] = new(lograte.Limiter)
	}
	reg.MustRegister(vec)
	return r
}

func (r *refusalLog) refused(reason, detail string) {
	c, l := r.counts[reason], r.lines[reason]
	if c == nil {
		return // not a reason natsembed reports
	}
	c.Inc()
	if ok, more := l.Allow(refusalLogEvery); ok {
		r.log.Warn("embedded NATS server refused a client", "reason", reason, "detail", detail,
			"not_logged_since_last", more, "counter", "pushring_nats_refusals_total")
	}
}
