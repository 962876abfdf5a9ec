// Command pushring runs one pushring node.
//
// Every flag has a PUSHRING_* environment equivalent (--data-dir is
// PUSHRING_DATA_DIR, and so on); a flag given on the command line wins.
//
// Exit status: 0 after a signal (or -h), 2 when the flags, their
// environment equivalents or the config they make are invalid (nothing has
// started then; the one line on stderr names the problem), 1 when the node
// failed to start or to stop.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pushring/pushring/internal/configerr"
	"github.com/pushring/pushring/node"
)

// errUsage is matched by the errors of the command line and environment.
var errUsage = errors.New("usage")

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0) // the flag package printed the usage
		}
		fmt.Fprintln(os.Stderr, "pushring:", err)
		os.Exit(exitCode(err))
	}
}

// exitCode is 2 for a config the node refuses to start with, as for a
// bad command line (the flag package's convention), so that a supervisor
// can tell it from a failure that a restart might cure; 1 otherwise.
func exitCode(err error) int {
	if errors.Is(err, errUsage) || errors.Is(err, node.ErrInvalidConfig) {
		return 2
	}
	return 1
}

func run(args []string) error {
	cfg := node.DefaultConfig()
	fs := flag.NewFlagSet("pushring", flag.ContinueOnError)
	var advertise, logLevel, join, pprofAddr string
	var authTopic bool
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory for JetStream data and the generated admin key")
	fs.StringVar(&cfg.MQTTAddr, "mqtt-addr", cfg.MQTTAddr, "MQTT/TCP listen address")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", cfg.HTTPAddr, "HTTP API listen address")
	fs.StringVar(&advertise, "advertise-mqtt", "", "comma-separated MQTT addresses returned at login (default: the bound MQTT address)")
	fs.StringVar(&cfg.AdminKey, "admin-key", "", "admin key (default: read or generate <data-dir>/admin.key)")
	fs.StringVar(&cfg.NATSURL, "nats-url", "", "comma-separated NATS server URLs (default: embedded NATS server)")
	fs.IntVar(&cfg.KVReplicas, "kv-replicas", 1, "replicas of the JetStream KV buckets (3 on a NATS cluster)")
	fs.StringVar(&cfg.NATSListen, "nats-listen", "", "host:port for the embedded NATS server to accept other clients")
	fs.StringVar(&cfg.NodeID, "node-id", cfg.NodeID, "node id (default: host name)")
	fs.StringVar(&cfg.GossipAddr, "gossip-addr", cfg.GossipAddr, "host:port for cluster gossip (memberlist, UDP and TCP)")
	fs.StringVar(&cfg.Membership.AdvertiseAddr, "advertise-gossip", "", "host:port the other nodes reach this node's gossip on (default: the bound address)")
	fs.DurationVar(&cfg.Membership.ProbeInterval, "gossip-probe-interval", cfg.Membership.ProbeInterval, "failure detection: how often a peer is probed")
	fs.DurationVar(&cfg.Membership.ProbeTimeout, "gossip-probe-timeout", cfg.Membership.ProbeTimeout, "failure detection: how long a probe waits for its ack")
	fs.IntVar(&cfg.Membership.SuspicionMult, "gossip-suspicion-mult", cfg.Membership.SuspicionMult, "failure detection: probe intervals a suspect has to refute before it is dead")
	fs.StringVar(&join, "join", "", "comma-separated gossip addresses of nodes to join")
	fs.StringVar(&cfg.Cluster, "cluster", cfg.Cluster, "cluster name: prefix of NATS subjects and KV buckets")
	fs.BoolVar(&authTopic, "auth-topic", false, "enable the prototype's login by publishing the session token to /service/auth")
	fs.DurationVar(&cfg.SessionTTL, "session-ttl", cfg.SessionTTL, "lifetime of a login session")
	fs.Float64Var(&cfg.LoginRate, "login-rate", 1, "login attempts a second per client address (negative: no limit)")
	fs.IntVar(&cfg.LoginBurst, "login-burst", 10, "burst of login attempts per client address")
	fs.IntVar(&cfg.Router.MaxConnections, "max-connections", cfg.Router.MaxConnections, "maximum MQTT connections (0: unlimited)")
	fs.Float64Var(&cfg.Router.ConnectRate, "connect-rate", cfg.Router.ConnectRate, "new MQTT connections a second per source address (negative: no limit)")
	fs.IntVar(&cfg.Router.ConnectBurst, "connect-burst", cfg.Router.ConnectBurst, "burst of new MQTT connections per source address")
	fs.IntVar(&cfg.Router.MaxPacketSize, "max-packet-size", cfg.Router.MaxPacketSize, "maximum MQTT packet size in bytes")
	fs.BoolVar(&cfg.Router.GoroutinePerConn, "goroutine-per-conn", false, "serve each MQTT connection with two goroutines instead of the epoll event loop")
	// Per-principal limits in the MQTT router: subscriptions and publish rate.
	fs.IntVar(&cfg.Router.MaxFilterLen, "max-filter-len", cfg.Router.MaxFilterLen, "longest MQTT topic filter in bytes (a longer one gets SUBACK 0x80)")
	fs.IntVar(&cfg.Router.MaxSubscriptionBytes, "max-subscription-bytes", cfg.Router.MaxSubscriptionBytes, "subscription bytes one principal may hold across its sessions (filter length + 64 each)")
	fs.Float64Var(&cfg.Router.PublishRate, "publish-rate", cfg.Router.PublishRate, "MQTT messages a second one principal may publish (0 or negative: no limit)")
	fs.IntVar(&cfg.Router.PublishBurst, "publish-burst", cfg.Router.PublishBurst, "burst of messages over --publish-rate")
	fs.Float64Var(&cfg.Router.PublishByteRate, "publish-bytes-rate", cfg.Router.PublishByteRate, "MQTT PUBLISH bytes a second one principal may send (0 or negative: no limit)")
	fs.IntVar(&cfg.Router.PublishByteBurst, "publish-bytes-burst", cfg.Router.PublishByteBurst, "burst of bytes over --publish-bytes-rate")
	fs.StringVar(&pprofAddr, "pprof-addr", "", "serve Go's /debug/pprof/ on this host:port (profiling; keep it on loopback)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	if err := applyEnv(fs); err != nil {
		return configerr.Wrap(errUsage, err)
	}
	if err := fs.Parse(args); err != nil {
		return configerr.Wrap(errUsage, err)
	}
	if fs.NArg() > 0 {
		return configerr.Wrap(errUsage, fmt.Errorf("unexpected arguments: %v", fs.Args()))
	}
	cfg.AuthTopic = authTopic
	// On the command line 0 turns a publish limit off; in router.Config
	// 0 means the default and a negative rate turns it off.
	for _, r := range []*float64{&cfg.Router.PublishRate, &cfg.Router.PublishByteRate} {
		if *r == 0 {
			*r = -1
		}
	}
	if join != "" {
		cfg.Join = strings.Split(join, ",")
	}
	if advertise != "" {
		cfg.AdvertiseMQTT = strings.Split(advertise, ",")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return configerr.Wrap(errUsage, fmt.Errorf("bad --log-level: %w", err))
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	// node.Start checks too; checking here refuses a bad config before
	// the profiling listener opens.
	if err := cfg.Validate(); err != nil {
		return err
	}

	if pprofAddr != "" {
		if err := servePprof(pprofAddr, cfg.Logger); err != nil {
			return err
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	n, err := node.Start(startCtx, cfg)
	cancel()
	if err != nil {
		return err
	}
	<-ctx.Done()
	cfg.Logger.Info("shutting down")
	return n.Close()
}

// servePprof serves the profiling endpoints on their own listener, apart
// from the API, so they are never exposed by accident with it.
func servePprof(addr string, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--pprof-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	log.Info("pprof listening", "addr", ln.Addr().String())
	go http.Serve(ln, mux)
	return nil
}

// applyEnv sets each flag from its PUSHRING_* variable, before the command
// line is parsed, so the command line wins.
func applyEnv(fs *flag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		name := "PUSHRING_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v, ok := os.LookupEnv(name)
		if !ok || err != nil {
			return
		}
		if _, isBool := f.Value.(interface{ IsBoolFlag() bool }); isBool && v == "" {
			v = strconv.FormatBool(true)
		}
		if e := f.Value.Set(v); e != nil {
			err = fmt.Errorf("%s=%q: %w", name, v, e)
		}
	})
	return err
}
