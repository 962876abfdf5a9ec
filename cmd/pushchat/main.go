// Command pushchat is a chat client on pushring: it
// logs in over HTTP, holds ONE MQTT connection subscribed to the user's
// private tree, prints what arrives and publishes what is typed.
//
//	PUSHRING_PASSWORD="$(cat alice.password)" pushchat --server http://127.0.0.1:8080 --user alice --group g1
//
// Protocol, kept deliberately plain:
//   - login: POST /v1/sessions; the MQTT address is the first of the
//     response's "mqtt" list (home node first; the others are fallbacks),
//     unless --mqtt is given. CONNECT with username = user, password =
//     the session token, client id pushchat-<user>-<random>, MQTT 3.1.1,
//     clean session.
//   - receive: SUBSCRIBE <private topic>/# at QoS 1 (the private topic of the
//     login response, /private/<user> by default). Each message prints one
//     line on stdout: "[group <gid>] <payload>" for <private>/group/<gid>,
//     "[direct] <payload>" for <private> itself. Payloads that are not one
//     printable line are printed Go-quoted.
//   - send: each stdin line is published as the plain text "<user>: <line>"
//     (no JSON: the sender's name is simply the payload's prefix) to
//     /group/<gid> (--group) or, with --direct <id>, to /private/<id>, at
//     --qos (default 1). Empty lines are skipped.
//   - exit: "/quit" or end of input disconnects and logs out
//     (DELETE /v1/sessions/current); so do SIGINT and SIGTERM. With
//     --linger D, end of input waits D more for messages first.
//
// Received messages go to stdout, everything else to stderr, so scripts can
// pipe both ways. Stdin is read only once the subscription is acknowledged:
// lines piped in are never sent before the replies can be received. The
// stderr line starting "pushchat: ready" marks that moment.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

const usageText = `usage: pushchat --user ID --password P [--group GID | --direct ID] [flags]

Logs in over HTTP, opens one MQTT connection, prints received messages on
stdout ("[group g1] bob: hi", "[direct] carol: psst") and publishes each
stdin line as "<user>: <line>". /quit or end of input exits (and logs out).

Flags:
`

// options are pushchat's flags.
type options struct {
	server   string        // HTTP API base URL
	user     string        // principal id
	password string        // the user's password
	group    string        // publish lines to /group/<group>
	direct   string        // publish lines to /private/<direct> instead
	mqttAddr string        // overrides the login response's MQTT addresses
	qos      int           // QoS of published lines
	linger   time.Duration // after end of input, keep receiving this long
	timeout  time.Duration // for login, CONNECT, SUBSCRIBE, each PUBACK, logout
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

func parseFlags(args []string, stderr io.Writer, getenv func(string) string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("pushchat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageText)
		fs.PrintDefaults()
	}
	server := getenv("PUSHRING_SERVER")
	if server == "" {
		server = "http://127.0.0.1:8080"
	}
	fs.StringVar(&o.server, "server", server, "HTTP API base URL (env PUSHRING_SERVER)")
	fs.StringVar(&o.user, "user", getenv("PUSHRING_USER"), "user id (env PUSHRING_USER)")
	fs.StringVar(&o.password, "password", getenv("PUSHRING_PASSWORD"), "password (env PUSHRING_PASSWORD)")
	fs.StringVar(&o.group, "group", "", "send typed lines to this group")
	fs.StringVar(&o.direct, "direct", "", "send typed lines as direct messages to this user instead")
	fs.StringVar(&o.mqttAddr, "mqtt", "", "MQTT address, host:port or URL (default: the first address login returns)")
	fs.IntVar(&o.qos, "qos", 1, "QoS of the messages sent, 0, 1 or 2")
	fs.DurationVar(&o.linger, "linger", 0, "at end of input, keep receiving for this long before exiting")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "timeout of each network step")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case o.user == "":
		return nil, errors.New("--user is required")
	case !validID.MatchString(o.user):
		return nil, fmt.Errorf("--user %q: ids are 1-64 of A-Z a-z 0-9 _ . -", o.user)
	case o.password == "":
		return nil, errors.New("--password is required (or PUSHRING_PASSWORD)")
	case o.group != "" && o.direct != "":
		return nil, errors.New("--group and --direct exclude each other")
	case o.group != "" && !validID.MatchString(o.group):
		return nil, fmt.Errorf("--group %q: ids are 1-64 of A-Z a-z 0-9 _ . -", o.group)
	case o.direct != "" && !validID.MatchString(o.direct):
		return nil, fmt.Errorf("--direct %q: ids are 1-64 of A-Z a-z 0-9 _ . -", o.direct)
	case o.qos < 0 || o.qos > 2:
		return nil, errors.New("--qos must be 0, 1 or 2")
	}
	if !strings.Contains(o.server, "://") {
		o.server = "http://" + o.server
	}
	o.server = strings.TrimRight(o.server, "/")
	return o, nil
}

// lockedWriter serialises writes from paho's goroutines and ours, and drops
// them once closed (a handler finishing after run has returned).
type lockedWriter struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

func (l *lockedWriter) println(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		io.WriteString(l.w, s+"\n")
	}
}

func (l *lockedWriter) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
}

// run is main without the process: it returns the exit status (0 clean,
// 1 failure, 2 bad flags).
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	o, err := parseFlags(args, stderr, getenv)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "pushchat: %v\n", err)
		return 2
	}
	out := &lockedWriter{w: stdout}
	errw := &lockedWriter{w: stderr}
	defer out.close()
	defer errw.close()
	status := func(format string, a ...any) { errw.println("pushchat: " + fmt.Sprintf(format, a...)) }

	// Log in.
	lctx, cancel := context.WithTimeout(ctx, o.timeout)
	sess, err := login(lctx, o.server, o.user, o.password)
	cancel()
	if err != nil {
		status("%v", err)
		return 1
	}
	defer func() {
		// ctx may be cancelled by now (a signal): logout gets its own.
		lctx, cancel := context.WithTimeout(context.Background(), o.timeout)
		defer cancel()
		if err := logout(lctx, o.server, sess.Token); err != nil {
			status("%v", err)
			return
		}
		status("logged out")
	}()
	private := sess.PrivateTopic
	if private == "" {
		private = privateTopic(o.user)
	}
	status("logged in as %s (session expires %s)", o.user, or(sess.ExpiresAt, "?"))

	// Connect: one MQTT connection.
	brokers, err := brokerList(o, sess)
	if err != nil {
		status("%v", err)
		return 1
	}
	lost := make(chan error, 1)
	var (
		attemptMu sync.Mutex
		attempted string
	)
	opts := mqtt.NewClientOptions().
		SetClientID(clientID(o.user)).
		SetUsername(o.user).
		SetPassword(sess.Token).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectTimeout(o.timeout).
		SetKeepAlive(30 * time.Second).
		SetConnectionAttemptHandler(func(b *url.URL, c *tls.Config) *tls.Config {
			attemptMu.Lock()
			attempted = b.String()
			attemptMu.Unlock()
			return c
		}).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			select {
			case lost <- err:
			default:
			}
		})
	onMessage := func(_ mqtt.Client, m mqtt.Message) {
		out.println(formatMessage(private, m.Topic(), m.Payload()))
	}
	opts.SetDefaultPublishHandler(onMessage)
	for _, b := range brokers {
		opts.AddBroker(b)
	}
	client := mqtt.NewClient(opts)
	if err := wait(client.Connect(), o.timeout, "connect"); err != nil {
		status("%v (tried %s)", err, strings.Join(brokers, ", "))
		return 1
	}
	defer client.Disconnect(250)
	attemptMu.Lock()
	connected := attempted
	attemptMu.Unlock()
	status("connected to %s as %s", connected, o.user)

	// Subscribe, and wait for the SUBACK before reading stdin.
	filter := private + "/#"
	st := client.Subscribe(filter, 1, onMessage)
	if err := wait(st, o.timeout, "subscribe"); err != nil {
		status("%v", err)
		return 1
	}
	if granted, ok := st.(*mqtt.SubscribeToken).Result()[filter]; ok && granted == 0x80 {
		status("subscribe %s: refused by the server", filter)
		return 1
	}
	target := ""
	switch {
	case o.group != "":
		target = groupTopic(o.group)
		status("ready: subscribed to %s; lines go to group %s (%s) at QoS %d; /quit or end of input exits", filter, o.group, target, o.qos)
	case o.direct != "":
		target = privateTopic(o.direct)
		status("ready: subscribed to %s; lines go to %s (%s) at QoS %d; /quit or end of input exits", filter, o.direct, target, o.qos)
	default:
		status("ready: subscribed to %s; receive only (no --group or --direct); /quit or end of input exits", filter)
	}

	// Chat.
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdin)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			status("interrupted")
			return 0
		case err := <-lost:
			status("connection lost: %v", err)
			return 1
		case line, ok := <-lines:
			if !ok {
				return lingerThenExit(ctx, o.linger, lost, status)
			}
			line = strings.TrimRight(line, "\r")
			if strings.TrimSpace(line) == "/quit" {
				return 0
			}
			if strings.TrimSpace(line) == "" {
				continue
			}
			if target == "" {
				status("not sent: start pushchat with --group or --direct to send")
				continue
			}
			if err := wait(client.Publish(target, byte(o.qos), false, outgoing(o.user, line)), o.timeout, "publish"); err != nil {
				status("%v", err)
			}
		}
	}
}

// lingerThenExit keeps the connection open for d after end of input so
// replies can still arrive (scripts pipe a few lines and wait for answers).
func lingerThenExit(ctx context.Context, d time.Duration, lost <-chan error, status func(string, ...any)) int {
	if d <= 0 {
		return 0
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	case err := <-lost:
		status("connection lost: %v", err)
		return 1
	}
	return 0
}

// brokerList returns the MQTT URLs to try, in order: --mqtt alone, or the
// login response's addresses (home node first).
func brokerList(o *options, s *session) ([]string, error) {
	addrs := s.MQTT
	if o.mqttAddr != "" {
		addrs = []string{o.mqttAddr}
	}
	if len(addrs) == 0 {
		return nil, errors.New("login returned no MQTT address: give one with --mqtt")
	}
	fallback := ""
	if u, err := url.Parse(o.server); err == nil {
		fallback = u.Hostname()
	}
	var out []string
	for _, a := range addrs {
		u, err := brokerURL(a, fallback)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

// wait waits for a paho token with a timeout.
func wait(t mqtt.Token, d time.Duration, what string) error {
	if !t.WaitTimeout(d) {
		return fmt.Errorf("%s: no answer within %s", what, d)
	}
	if err := t.Error(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
