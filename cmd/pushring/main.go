// Command pushring runs one pushring node.
//
// Every flag has a PUSHRING_* environment equivalent (--data-dir is
// PUSHRING_DATA_DIR, and so on); a flag given on the command line wins.
//
// Exit status: 0 after a signal (or -h), whether the drain finished, was
// cut short by --shutdown-timeout or by a second signal; 2 when the flags, their
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
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pushring/pushring/internal/configerr"
	"github.com/pushring/pushring/journal"
	"github.com/pushring/pushring/node"
	"github.com/pushring/pushring/retained"
	"github.com/pushring/pushring/router"
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
	var authTopic, redirectHome bool
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory for JetStream data and the generated admin key")
	fs.StringVar(&cfg.MQTTAddr, "mqtt-addr", cfg.MQTTAddr, "MQTT/TCP listen address")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", cfg.HTTPAddr, "HTTP API listen address")
	fs.StringVar(&advertise, "advertise-mqtt", "", "comma-separated MQTT addresses returned at login (default: the bound MQTT address)")
	var wsOrigins, trustedProxies string
	fs.StringVar(&trustedProxies, "trusted-proxies", "", "comma-separated CIDRs (or addresses) of the load balancers in front of the node: from them, the client's address is read from Forwarded / X-Forwarded-For on the HTTP listener and, with --mqtt-proxy-protocol, from PROXY protocol headers on the MQTT listeners (limits, logs); default none")
	fs.BoolVar(&cfg.Webhooks.AllowPrivate, "webhook-allow-private", false, "let webhook endpoints be on loopback, private and link-local addresses (default: refused when a request connects, so the admin API cannot reach the node's own network)")
	fs.BoolVar(&cfg.Router.ProxyProtocol, "mqtt-proxy-protocol", false, "every connection to the MQTT listeners (TCP and TLS, not WebSocket) starts with a PROXY protocol v1 or v2 header from one of --trusted-proxies; connections from elsewhere or without a valid header are refused")
	fs.StringVar(&wsOrigins, "ws-origins", "", "comma-separated Origin values (https://app.example.com) browsers may open MQTT over WebSocket (GET /mqtt on the HTTP listeners) from (default: any; requests without Origin are always allowed)")
	fs.StringVar(&cfg.AdminKeyFile, "admin-key-file", "", "file of admin keys, one per line, all accepted, reread on SIGHUP (default: read or generate <data-dir>/admin.key)")
	fs.StringVar(&cfg.AdminKey, "admin-key", "", "admin key; a secret on the command line is readable by every local user: prefer --admin-key-file or PUSHRING_ADMIN_KEY")
	fs.StringVar(&cfg.NATSURL, "nats-url", "", "comma-separated NATS server URLs (default: embedded NATS server)")
	fs.IntVar(&cfg.KVReplicas, "kv-replicas", 1, "replicas of the JetStream KV buckets (3 on a NATS cluster)")
	// Durable QoS 1: the journal of stored messages and persistent sessions.
	jd := journal.DefaultConfig()
	fs.DurationVar(&cfg.Journal.MaxAge, "journal-max-age", jd.MaxAge, "how long a stored QoS 1 message waits for an offline persistent session")
	fs.Int64Var(&cfg.Journal.MaxBytes, "journal-max-bytes", jd.MaxBytes, "cluster-wide cap of the journal of stored QoS 1 messages (the oldest go first)")
	fs.Int64Var(&cfg.RetainedMaxBytes, "retained-max-bytes", retained.DefaultConfig().MaxBytes, "cluster-wide cap of the retained messages, one per group; every node holds them in memory")
	fs.StringVar(&cfg.TopicRulesFile, "topic-rules", "", "JSON file of topic rules: who may publish and subscribe to topics outside /private, /group and /service (default: none, those topics are closed)")
	fs.DurationVar(&cfg.StoreWait, "store-wait", node.DefaultConfig().StoreWait, "at start, how long to keep trying to open the KV buckets and the journal while JetStream does not answer")
	fs.DurationVar(&cfg.Journal.Timeout, "journal-timeout", jd.Timeout, "a QoS 1 message not stored within this long gets no PUBACK (the publisher's connection is closed) or an HTTP 503")
	fs.Float64Var(&cfg.Router.RebalanceRate, "rebalance-rate", router.DefaultConfig().RebalanceRate, "connections a second closed so that clients homed on another node reconnect there, once the ring is quiet for 30 s (negative: never)")
	fs.DurationVar(&cfg.Router.SessionExpiry, "session-expiry", router.DefaultConfig().SessionExpiry, "a persistent MQTT session offline this long is dropped, with its record")
	fs.StringVar(&cfg.NATSListen, "nats-listen", "", "host:port for the embedded NATS server to accept other clients")
	fs.StringVar(&cfg.NodeID, "node-id", cfg.NodeID, "node id (default: host name)")
	fs.StringVar(&cfg.GossipAddr, "gossip-addr", cfg.GossipAddr, "host:port for cluster gossip (memberlist, UDP and TCP)")
	fs.StringVar(&cfg.Membership.AdvertiseAddr, "advertise-gossip", "", "host:port the other nodes reach this node's gossip on (default: the bound address)")
	fs.DurationVar(&cfg.Membership.ProbeInterval, "gossip-probe-interval", cfg.Membership.ProbeInterval, "failure detection: how often a peer is probed")
	fs.DurationVar(&cfg.Membership.ProbeTimeout, "gossip-probe-timeout", cfg.Membership.ProbeTimeout, "failure detection: how long a probe waits for its ack")
	fs.IntVar(&cfg.Membership.SuspicionMult, "gossip-suspicion-mult", cfg.Membership.SuspicionMult, "failure detection: probe intervals a suspect has to refute before it is dead")
	fs.StringVar(&join, "join", "", "comma-separated gossip addresses of nodes to join (needs --gossip-key-file)")
	// Gossip authentication: the key file (reread on SIGHUP), the opt-out,
	// and the full-sync period (how soon a change of keys is exercised).
	fs.StringVar(&cfg.GossipKeyFile, "gossip-key-file", "", "file of base64 gossip keys, one a line, the first encrypting (required with --join or a non-loopback --gossip-addr; reread on SIGHUP; make one with 'pushctl gossip-key')")
	fs.BoolVar(&cfg.InsecureGossip, "insecure-gossip", false, "allow gossip in clear with --join or a non-loopback --gossip-addr: anyone reaching the gossip port can join the cluster")
	fs.DurationVar(&cfg.Membership.PushPullInterval, "gossip-push-pull-interval", cfg.Membership.PushPullInterval, "period of full gossip state syncs with a random peer")
	fs.StringVar(&cfg.Cluster, "cluster", cfg.Cluster, "cluster name: prefix of NATS subjects and KV buckets")
	fs.BoolVar(&authTopic, "auth-topic", false, "enable the prototype's login by publishing the session token to /service/auth")
	fs.BoolVar(&redirectHome, "redirect-home", false, "send MQTT 5.0 clients that log in on a node other than their home to it (CONNACK 0x9C with the home's address as Server Reference), and name the new home when draining")
	fs.DurationVar(&cfg.SessionTTL, "session-ttl", cfg.SessionTTL, "lifetime of a login session")
	fs.Float64Var(&cfg.LoginRate, "login-rate", 2, "login attempts a second per client address (negative: no limit)")
	fs.IntVar(&cfg.LoginBurst, "login-burst", 50, "burst of login attempts per client address")
	fs.IntVar(&cfg.Router.MaxConnections, "max-connections", cfg.Router.MaxConnections, "maximum MQTT connections (0: unlimited)")
	fs.Float64Var(&cfg.Router.ConnectRate, "connect-rate", cfg.Router.ConnectRate, "new MQTT connections a second per source address (negative: no limit)")
	fs.IntVar(&cfg.Router.ConnectBurst, "connect-burst", cfg.Router.ConnectBurst, "burst of new MQTT connections per source address")
	fs.IntVar(&cfg.Router.MaxPacketSize, "max-packet-size", cfg.Router.MaxPacketSize, "maximum MQTT packet size in bytes")
	fs.BoolVar(&cfg.Router.GoroutinePerConn, "goroutine-per-conn", false, "serve each MQTT connection with two goroutines instead of the epoll event loop")
	// TLS for clients: certificate files (re-read when they change and on
	// SIGHUP), MQTT over TLS, HTTPS, device login by client certificate.
	var advertiseTLS string
	fs.StringVar(&cfg.TLSCertFile, "tls-cert", "", "PEM certificate chain file of the TLS listeners (enables --mqtt-tls-addr and --https-addr)")
	fs.StringVar(&cfg.TLSKeyFile, "tls-key", "", "PEM private key file of --tls-cert")
	fs.StringVar(&cfg.ClientCAFile, "client-ca", "", "PEM CA file for MQTT client certificates: a device whose certificate (CN = its id) chains to it logs in with no key")
	fs.StringVar(&cfg.MQTTTLSAddr, "mqtt-tls-addr", "", `MQTT over TLS listen address (default ":8883" with --tls-cert; "off": none)`)
	fs.StringVar(&cfg.HTTPSAddr, "https-addr", "", `HTTPS API listen address (default ":8443" with --tls-cert; "off": none)`)
	fs.StringVar(&advertiseTLS, "advertise-mqtt-tls", "", "comma-separated MQTT-over-TLS addresses returned at login (default: the bound MQTT TLS address)")
	fs.DurationVar(&cfg.Router.TLSHandshakeTimeout, "tls-handshake-timeout", cfg.Router.TLSHandshakeTimeout, "a TLS handshake that takes longer is cut off")
	fs.IntVar(&cfg.Router.MaxTLSHandshakes, "max-tls-handshakes", cfg.Router.MaxTLSHandshakes, "TLS handshakes in progress at once, node-wide; over it a new connection is closed and counted")

	// HTTP limits and login throttling per account.
	fs.DurationVar(&cfg.HTTP.ReadHeaderTimeout, "http-read-header-timeout", cfg.HTTP.ReadHeaderTimeout, "HTTP: time allowed to read a request's headers")
	fs.DurationVar(&cfg.HTTP.ReadTimeout, "http-read-timeout", cfg.HTTP.ReadTimeout, "HTTP: time allowed to read a whole request, headers and body")
	fs.DurationVar(&cfg.HTTP.WriteTimeout, "http-write-timeout", cfg.HTTP.WriteTimeout, "HTTP: time allowed from the end of a request's headers to the end of its answer")
	fs.DurationVar(&cfg.HTTP.IdleTimeout, "http-idle-timeout", cfg.HTTP.IdleTimeout, "HTTP: how long an idle keep-alive connection is kept")
	fs.IntVar(&cfg.HTTP.MaxConns, "http-max-conns", cfg.HTTP.MaxConns, "HTTP: maximum open connections; more are answered 503 at once (negative: no cap)")
	fs.IntVar(&cfg.HTTP.MaxHeaderBytes, "http-max-header-bytes", cfg.HTTP.MaxHeaderBytes, "HTTP: maximum size of a request's line and headers, in bytes")
	fs.IntVar(&cfg.LoginAccountFailures, "login-account-failures", cfg.LoginAccountFailures, "failed logins in a row for one id, from any address, before it is locked for a growing backoff (negative: off)")
	fs.DurationVar(&cfg.LoginAccountMaxBackoff, "login-account-max-backoff", cfg.LoginAccountMaxBackoff, "longest lock of an id after failed logins (the first lasts 1s, each further failure doubles it)")

	// Per-principal limits in the MQTT router: subscriptions and publish rate.
	fs.IntVar(&cfg.Router.MaxFilterLen, "max-filter-len", cfg.Router.MaxFilterLen, "longest MQTT topic filter in bytes (a longer one gets SUBACK 0x80)")
	fs.IntVar(&cfg.Router.MaxSubscriptionBytes, "max-subscription-bytes", cfg.Router.MaxSubscriptionBytes, "subscription bytes one principal may hold across its sessions (filter length + 64 each)")
	fs.Float64Var(&cfg.Router.PublishRate, "publish-rate", cfg.Router.PublishRate, "MQTT messages a second one principal may publish (negative: no limit)")
	fs.IntVar(&cfg.Router.PublishBurst, "publish-burst", cfg.Router.PublishBurst, "burst of messages over --publish-rate")
	fs.Float64Var(&cfg.Router.PublishByteRate, "publish-bytes-rate", cfg.Router.PublishByteRate, "MQTT PUBLISH bytes a second one principal may send (negative: no limit)")
	fs.IntVar(&cfg.Router.PublishByteBurst, "publish-bytes-burst", cfg.Router.PublishByteBurst, "burst of bytes over --publish-bytes-rate")

	// Per-session backlog bounds: what a persistent session gets back
	// from the journal when it resumes (the oldest over a bound are
	// dropped, counted, and noticed on <private>/<id>/$gap).
	fs.IntVar(&cfg.Router.SessionBacklogMessages, "session-backlog-messages", cfg.Router.SessionBacklogMessages, "most messages a persistent session gets back when it resumes; the oldest over it are dropped and the client told on /private/<id>/$gap")
	fs.IntVar(&cfg.Router.SessionBacklogBytes, "session-backlog-bytes", cfg.Router.SessionBacklogBytes, "most payload bytes a persistent session gets back when it resumes (the oldest over it are dropped)")
	fs.DurationVar(&cfg.Router.SessionBacklogAge, "session-backlog-age", cfg.Router.SessionBacklogAge, "a message stored longer ago is not replayed to a persistent session (at most --journal-max-age)")

	// NATS credentials, permissions and TLS: each node signs in with its
	// own nkey (or a .creds file); no NATS secret on the command line.
	fs.StringVar(&cfg.NATSNKeyFile, "nats-nkey-file", "", "this node's NATS user nkey seed (default: read or generate <data-dir>/nats.nk; its public key is logged)")
	fs.StringVar(&cfg.NATSCredsFile, "nats-creds-file", "", "NATS credentials file (JWT and seed) for a NATS server in operator mode, instead of the nkey")
	fs.BoolVar(&cfg.InsecureNATS, "insecure-nats", false, "use a NATS server that asks for no credentials (development only: anyone reaching it reads and forges all traffic)")
	fs.StringVar(&cfg.NATSAuthorizedKeysFile, "nats-authorized-keys-file", "", "embedded NATS server: file of \"<node-id> <public-nkey>\" lines for the other nodes it lets in (re-read on SIGHUP)")
	fs.StringVar(&cfg.NATSCA, "nats-ca", "", "CA file (PEM) to verify the NATS servers of --nats-url")
	fs.StringVar(&cfg.NATSCert, "nats-cert", "", "client certificate file (PEM) for the connection to --nats-url")
	fs.StringVar(&cfg.NATSKey, "nats-key", "", "key file (PEM) of --nats-cert")
	fs.StringVar(&cfg.NATSTLSCert, "nats-tls-cert", "", "embedded NATS server: certificate file (PEM); --nats-listen then serves TLS only")
	fs.StringVar(&cfg.NATSTLSKey, "nats-tls-key", "", "embedded NATS server: key file (PEM) of --nats-tls-cert")
	fs.StringVar(&cfg.NATSTLSClientCA, "nats-tls-client-ca", "", "embedded NATS server: require client certificates signed by this CA (PEM)")
	// Graceful shutdown: how long SIGTERM's drain may take.
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "SIGTERM drains the node (stop accepting, leave the cluster, close the clients so they resume elsewhere) within this long, then it stops anyway and exits 0; a second signal stops it at once")

	// Steady bursts: output held over a run of waiting envelopes.
	fs.IntVar(&cfg.OutputBatch, "output-batch", cfg.OutputBatch, "a burst is delivered in runs of at most this many messages, each run's output leaving in one socket write per connection (1: write as soon as possible)")
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
	cfg.Router.RedirectHome = redirectHome
	if wsOrigins != "" {
		cfg.WSOrigins = strings.Split(wsOrigins, ",")
	}
	if trustedProxies != "" {
		for s := range strings.SplitSeq(trustedProxies, ",") {
			p, err := parsePrefix(strings.TrimSpace(s))
			if err != nil {
				return configerr.Wrap(errUsage, fmt.Errorf("--trusted-proxies: %w", err))
			}
			cfg.TrustedProxies = append(cfg.TrustedProxies, p)
		}
	}
	if join != "" {
		cfg.Join = strings.Split(join, ",")
	}
	if advertise != "" {
		cfg.AdvertiseMQTT = strings.Split(advertise, ",")
	}
	if advertiseTLS != "" {
		cfg.AdvertiseMQTTTLS = strings.Split(advertiseTLS, ",")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return configerr.Wrap(errUsage, fmt.Errorf("bad --log-level: %w", err))
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	for _, name := range secretsOnCommandLine(fs) {
		cfg.Logger.Warn("a secret was given on the command line, where every local user can read it; use the file or environment variable instead",
			"flag", "--"+name)
	}
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

	// SIGTERM or SIGINT cancels ctx (a start under way, or the run); a
	// second one, read from the same channel, cuts the drain short. The
	// channel stays registered until the process exits: a signal that
	// comes while run returns is not left to kill it.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		select {
		case <-sigs:
			stop()
		case <-ctx.Done():
		}
	}()
	// SIGHUP is caught from the start: until the node runs, one is
	// ignored rather than killing a starting node.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	n, err := node.Start(startCtx, cfg)
	cancel()
	if err != nil {
		return err
	}
	for {
		select {
		case <-hup:
			cfg.Logger.Info("SIGHUP: reloading files")
			n.Reload() // logs each step that failed; the node runs on with what it had
		case <-ctx.Done():
			return shutdown(n, cfg.Logger, cfg.ShutdownTimeout, sigs)
		}
	}
}

// shutdown drains and stops n, waiting at most timeout, or until a
// second signal: then the process exits with the drain unfinished (0
// all the same: it stopped because it was asked to, and nothing
// acknowledged depends on the drain, which only spares the clients
// duplicates and delays).
func shutdown(n *node.Node, log *slog.Logger, timeout time.Duration, again <-chan os.Signal) error {
	log.Info("shutting down: draining", "timeout", timeout)
	done := make(chan error, 1)
	go func() { done <- n.Close() }()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		log.Warn("shutdown: --shutdown-timeout passed before the node stopped; exiting now", "timeout", timeout)
	case sig := <-again:
		log.Warn("shutdown: second signal; exiting now, without finishing the drain", "signal", sig.String())
	}
	return nil
}

// secretFlags are the flags whose value is a secret: given on the command
// line they still work, with a warning, since /proc/<pid>/cmdline shows
// them to every local user. Their PUSHRING_* variables and --*-file
// flags are the quiet way.
var secretFlags = map[string]bool{"admin-key": true}

// secretsOnCommandLine names the secret flags fs parsed from the command
// line. fs.Visit sees only those: applyEnv sets values, not flags.
func secretsOnCommandLine(fs *flag.FlagSet) []string {
	var names []string
	fs.Visit(func(f *flag.Flag) {
		if secretFlags[f.Name] {
			names = append(names, f.Name)
		}
	})
	return names
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

// parsePrefix reads a CIDR, or an address as a one-address prefix.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(ip, ip.BitLen()), nil
}
