// Package natsembed runs a NATS server with JetStream inside the process:
// the one-machine default of a node, and the real NATS every test uses.
//
// A server that listens for other processes authenticates every client,
// the in-process ones included, with an nkey (Config.Users): whoever can
// reach an open NATS port could otherwise write sessions into the KV
// buckets or publish envelopes past every ACL. Each user may carry its own
// permissions, and SetUsers swaps the list at run time: a key left out is
// refused from then on and its live connections are closed.
package natsembed

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/pushring/pushring/internal/natsauth"
)

// Config of an embedded server.
type Config struct {
	// StoreDir holds JetStream's files. Required.
	StoreDir string
	// Listen is host:port for other processes (nodes, tools) to connect
	// to. Empty: no listener; the node talks to it in-process only.
	Listen string
	// MaxPayload is the largest message the server accepts (default 8 MiB,
	// so large group envelopes fit).
	MaxPayload int32
	// ServerName names the server (default "pushring").
	ServerName string
	// Users are the nkey users the server accepts. With none, the server
	// accepts any client, which Start allows only without a Listen
	// address (in-process clients of this process alone). With some,
	// every client, in-process ones included, must sign with one of
	// their keys.
	Users []User
	// TLSCertFile and TLSKeyFile (PEM) make the Listen address serve TLS
	// only. TLSClientCAFile (PEM), when set, also requires of every client
	// a certificate signed by that CA. In-process clients bypass TLS.
	TLSCertFile     string
	TLSKeyFile      string
	TLSClientCAFile string
	// ClusterName, ClusterListen and Routes make the server one of a NATS
	// cluster (JetStream clustered by RAFT across the servers): it
	// listens for routes on ClusterListen (host:port) and connects to the
	// other servers' route addresses (host:port). ServerName must then be
	// unique per server.
	ClusterName   string
	ClusterListen string
	Routes        []string
	// OnRefusal, when set, is told of every client the server refuses:
	// reason is RefusedAuth (unknown or revoked key, bad signature),
	// RefusedPermission (a subject outside the user's permissions; the
	// connection stays) or RefusedTLS (a failed handshake); detail is
	// the server's own line (client address, subject). It runs on the
	// server's goroutines, once per event: it must not block. Default
	// nil: refusals are not reported (the server logs nothing).
	OnRefusal func(reason, detail string)
}

// The reasons OnRefusal reports.
const (
	RefusedAuth       = "authentication"
	RefusedPermission = "permission"
	RefusedTLS        = "tls"
)

// User is a client allowed on the server: a public user nkey ("U...")
// and what it may do.
type User struct {
	// PublicKey is the user's public nkey.
	PublicKey string
	// Permissions limits the user's subjects; nil allows every subject
	// (tests and tools only: a node's connection gets a limited set).
	Permissions *Permissions
}

// Permissions lists the subjects (wildcards allowed) a user may publish
// to and subscribe to; anything else is refused with a permissions
// violation. They are natsauth's, which says what a node gets.
type Permissions = natsauth.Permissions

// Server is a running embedded NATS server.
type Server struct {
	*server.Server
	auth      *nkeyAuth // nil: the server has no users and lets any client in
	listening bool
}

// Start starts the server and waits until it accepts connections.
func Start(cfg Config) (*Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("natsembed: StoreDir is required")
	}
	if cfg.MaxPayload == 0 {
		cfg.MaxPayload = 8 << 20
	}
	if cfg.ServerName == "" {
		cfg.ServerName = "pushring"
	}
	opts := &server.Options{
		ServerName:             cfg.ServerName,
		JetStream:              true,
		StoreDir:               cfg.StoreDir,
		MaxPayload:             cfg.MaxPayload,
		NoSigs:                 true,
		NoLog:                  true,
		DisableJetStreamBanner: true,
	}
	var auth *nkeyAuth
	if len(cfg.Users) > 0 {
		auth = &nkeyAuth{}
		if err := auth.set(cfg.Users); err != nil {
			return nil, err
		}
		// The users are checked here, not in the server's own options:
		// changing those at run time (ReloadOptions) races, in the
		// server, with JetStream reading them. AlwaysEnableNonce makes
		// the server send the nonce the clients sign.
		opts.CustomClientAuthentication, opts.AlwaysEnableNonce = auth, true
	}
	if cfg.Listen == "" {
		opts.DontListen = true
	} else {
		if len(cfg.Users) == 0 {
			return nil, errors.New("natsembed: a listening server needs at least one nkey user")
		}
		host, port, err := splitHostPort(cfg.Listen)
		if err != nil {
			return nil, err
		}
		opts.Host, opts.Port = host, port
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, errors.New("natsembed: TLSCertFile and TLSKeyFile go together")
	}
	if cfg.TLSClientCAFile != "" && cfg.TLSCertFile == "" {
		return nil, errors.New("natsembed: TLSClientCAFile needs TLSCertFile and TLSKeyFile")
	}
	if cfg.TLSCertFile != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{
			CertFile: cfg.TLSCertFile,
			KeyFile:  cfg.TLSKeyFile,
			CaFile:   cfg.TLSClientCAFile,
			Verify:   cfg.TLSClientCAFile != "",
		})
		if err != nil {
			return nil, fmt.Errorf("natsembed: TLS: %w", err)
		}
		opts.TLS, opts.TLSVerify, opts.TLSConfig = true, cfg.TLSClientCAFile != "", tc
		opts.TLSTimeout = 2 // seconds for the handshake; a stalled one is cut off
	}
	if cfg.ClusterListen != "" {
		host, port, err := splitHostPort(cfg.ClusterListen)
		if err != nil {
			return nil, err
		}
		opts.Cluster.Name, opts.Cluster.Host, opts.Cluster.Port = cfg.ClusterName, host, port
		var urls []string
		for _, r := range cfg.Routes {
			urls = append(urls, "nats://"+r)
		}
		if len(urls) > 0 {
			opts.Routes = server.RoutesFromStr(strings.Join(urls, ","))
		}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsembed: %w", err)
	}
	if cfg.OnRefusal != nil {
		s.SetLogger(refusalLogger(cfg.OnRefusal), false, false)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("natsembed: server not ready within 10s")
	}
	return &Server{Server: s, auth: auth, listening: cfg.Listen != ""}, nil
}

// refusalLogger is the server's logger when refusals are reported: it
// picks the refusals out of the server's error lines and drops the rest,
// as the server's NoLog would.
type refusalLogger func(reason, detail string)

func (l refusalLogger) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	switch {
	case strings.Contains(msg, "Violation - Subject") || strings.Contains(msg, "Violation - Reply"):
		l(RefusedPermission, msg)
	case strings.Contains(msg, server.ErrAuthentication.Error()):
		l(RefusedAuth, msg)
	case strings.Contains(msg, "TLS handshake error"):
		l(RefusedTLS, msg)
	}
}

func (refusalLogger) Noticef(string, ...any) {}
func (refusalLogger) Warnf(string, ...any)   {}
func (refusalLogger) Fatalf(string, ...any)  {}
func (refusalLogger) Debugf(string, ...any)  {}
func (refusalLogger) Tracef(string, ...any)  {}

// nkeyAuth authenticates clients against a table of user nkeys that
// SetUsers swaps at run time: a client names its public key and signs the
// server's nonce with the private one.
type nkeyAuth struct {
	users atomic.Pointer[map[string]*server.Permissions] // public key → permissions (nil: all)
}

// set checks users and makes them the table.
func (a *nkeyAuth) set(users []User) error {
	m := make(map[string]*server.Permissions, len(users))
	for _, u := range users {
		if !nkeys.IsValidPublicUserKey(u.PublicKey) {
			return fmt.Errorf("natsembed: %q is not a public user nkey", u.PublicKey)
		}
		if _, dup := m[u.PublicKey]; dup {
			return fmt.Errorf("natsembed: user nkey %s listed twice", u.PublicKey)
		}
		var perms *server.Permissions
		if p := u.Permissions; p != nil {
			// Empty Allow lists would allow everything: deny all instead.
			perms = &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: p.Publish, Deny: denyIfEmpty(p.Publish)},
				Subscribe: &server.SubjectPermission{Allow: p.Subscribe, Deny: denyIfEmpty(p.Subscribe)},
			}
		}
		m[u.PublicKey] = perms
	}
	a.users.Store(&m)
	return nil
}

// listed reports whether key is a user now.
func (a *nkeyAuth) listed(key string) bool {
	_, ok := (*a.users.Load())[key]
	return ok
}

// Check is the server's authentication of a client connection.
func (a *nkeyAuth) Check(c server.ClientAuthentication) bool {
	if c.Kind() != server.CLIENT {
		return false
	}
	o := c.GetOpts()
	perms, ok := (*a.users.Load())[o.Nkey]
	if !ok {
		return false
	}
	// nats.go sends the signature in URL-safe base64; others in std.
	sig, err := base64.RawURLEncoding.DecodeString(o.Sig)
	if err != nil {
		if sig, err = base64.StdEncoding.DecodeString(o.Sig); err != nil {
			return false
		}
	}
	pub, err := nkeys.FromPublicKey(o.Nkey)
	if err != nil || pub.Verify(c.GetNonce(), sig) != nil {
		return false
	}
	c.RegisterUser(&server.User{Username: o.Nkey, Permissions: perms})
	return true
}

func denyIfEmpty(allow []string) []string {
	if len(allow) == 0 {
		return []string{">"}
	}
	return nil
}

// SetUsers replaces the server's users: a connection whose key is no
// longer listed is closed at once and can no longer connect; the others
// stay connected with the permissions they had (a listed user's new
// permissions apply to its next connection). It refuses an empty list on
// a listening server, as Start does, and users on a server started
// without any (it lets every client in).
func (s *Server) SetUsers(users []User) error {
	if len(users) == 0 && s.listening {
		return errors.New("natsembed: a listening server needs at least one nkey user")
	}
	if s.auth == nil {
		return errors.New("natsembed: the server was started without users")
	}
	if err := s.auth.set(users); err != nil {
		return err
	}
	if err := s.closeUnlisted(); err != nil {
		return err
	}
	// A client whose signature was checked just before the swap may not
	// be listed as connected yet: look again once it must be.
	time.AfterFunc(time.Second, func() { s.closeUnlisted() })
	return nil
}

// closeUnlisted closes the client connections whose key is no longer a
// user.
func (s *Server) closeUnlisted() error {
	if !s.Running() {
		return nil
	}
	conns, err := s.Connz(&server.ConnzOptions{Username: true, Limit: 1 << 20})
	if err != nil {
		return fmt.Errorf("natsembed: list connections: %w", err)
	}
	for _, ci := range conns.Conns {
		if ci.AuthorizedUser != "" && !s.auth.listed(ci.AuthorizedUser) {
			s.DisconnectClientByID(ci.Cid) // gone already: nothing to close
		}
	}
	return nil
}

// Connect opens a client connection to the server, in-process. opts carry
// the credentials (nats.Nkey) when the server has users.
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(s.Server), nats.Name("pushring")}, opts...)
	return nats.Connect("", opts...)
}

// Stop shuts the server down and waits for it.
func (s *Server) Stop() {
	s.Shutdown()
	s.WaitForShutdown()
}

func splitHostPort(addr string) (string, int, error) {
	var host string
	var port int
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			host = addr[:i]
			if _, err := fmt.Sscanf(addr[i+1:], "%d", &port); err != nil {
				return "", 0, fmt.Errorf("natsembed: bad listen address %q", addr)
			}
			if host == "" {
				host = "127.0.0.1"
			}
			if port == 0 {
				port = server.RANDOM_PORT // NATS reads 0 as "the default port"
			}
			return host, port, nil
		}
	}
	return "", 0, fmt.Errorf("natsembed: bad listen address %q", addr)
}
