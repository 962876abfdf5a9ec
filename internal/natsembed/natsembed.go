// Package natsembed runs a NATS server with JetStream inside the process:
// the one-machine default of a node, and the real NATS every test uses.
package natsembed

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
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
	// Token, when set, is required of every client (nats://<token>@host).
	// Start refuses a Listen address without one: whoever can reach an
	// open NATS port could write sessions into the KV buckets or publish
	// envelopes past every ACL.
	Token string
	// ClusterName, ClusterListen and Routes make the server one of a NATS
	// cluster (JetStream clustered by RAFT across the servers): it
	// listens for routes on ClusterListen (host:port) and connects to the
	// other servers' route addresses (host:port). ServerName must then be
	// unique per server.
	ClusterName   string
	ClusterListen string
	Routes        []string
}

// Server is a running embedded NATS server.
type Server struct {
	*server.Server
	token string
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
	if cfg.Token != "" {
		opts.Authorization = cfg.Token
	}
	if cfg.Listen == "" {
		opts.DontListen = true
	} else {
		if cfg.Token == "" {
			return nil, errors.New("natsembed: a listening server needs a Token")
		}
		host, port, err := splitHostPort(cfg.Listen)
		if err != nil {
			return nil, err
		}
		opts.Host, opts.Port = host, port
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
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("natsembed: server not ready within 10s")
	}
	return &Server{Server: s, token: cfg.Token}, nil
}

// Connect opens a client connection to the server: in-process when it has
// no listener, over loopback TCP otherwise.
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(s.Server), nats.Name("pushring")}, opts...)
	if s.token != "" {
		opts = append(opts, nats.Token(s.token))
	}
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
