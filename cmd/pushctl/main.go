// Command pushctl is the admin and user command line of pushring. It talks to
// a node over the HTTP API only (package client) and never imports server
// packages; its NATS commands work on local files with internal/natsauth,
// which holds no server code.
//
//	pushctl [global flags] <command> [args] [flags]
//
// Flags may come before or after the command and its arguments; "--" ends
// the flags. Run "pushctl help" for the list of commands.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/pushring/pushring/client"
	"github.com/pushring/pushring/internal/secretfile"
)

const usageText = `usage: pushctl [global flags] <command> [args] [flags]

Admin (needs --admin-key, --admin-key-file or PUSHRING_ADMIN_KEY):
  user create <id> --password P              create a user
  user list [--prefix P] [--limit N] [--cursor C] [--all] [-q]
  device list [...]                          the same options: one id per line, with when it
  group list [...]                           was made (-q: the ids only); --prefix: the ids that
                                             start with P; a page of --limit ids (default 100,
                                             at most 500), then "more: --cursor C" on stderr if
                                             there are more; --all: every page
  user delete <id>                           delete a user: its connections close, its
                                             memberships, sessions and offline messages go
  device create <id> [-q]                    create a device; prints its id and key (-q: the key only)
  device rotate-key <id> [-q]                a new key for a device, printed like device create;
                                             the old key stops working
  device delete <id>                         delete a device, like user delete
  group create <gid> [--members-can-publish] create a group
  group delete <gid>                         delete a group, its roles and retained message
  group add-member <gid> <id>                make <id> a member (receives the group's messages)
  group remove-member <gid> <id>
  group add-publisher <gid> <id>             allow <id> (e.g. a device) to publish to the group
  group remove-publisher <gid> <id>
  webhook add <url> [--event T]... [-q]      POST signed events to <url>: those of type T
                                             (repeatable; T is session.connected,
                                             session.disconnected, message.offline or refusal),
                                             default every type; prints the id and the signing
                                             secret, shown only once (-q: the secret only)
  webhook list [-q]                          the webhooks, one a line: id, when it was made, url
                                             and event types; never the secret (-q: the ids only)
  webhook delete <id>                        stop sending events to a webhook

Admin, or the user or device itself (these send the user's --token or the
device's --device/--key if given, else the admin key):
  user show <id>                             a user: kind and when it was made
  device show <id>                           the same for a device
  user groups <id>                           the groups of a user and its roles in them
  device groups <id>                         the same for a device
  user sessions <id>                         the login sessions of a user (* marks --token's)
  user revoke-sessions <id>                  end every login session of a user, --token's too
  user password <id> [--revoke-sessions]     set a user's password: the new one from
                                             PUSHRING_PASSWORD, the old one (needed with
                                             --token, not with the admin key) from
                                             PUSHRING_OLD_PASSWORD; those not set are read from
                                             stdin, one a line, the new one first
      --revoke-sessions  end the user's other login sessions (all of them with the admin key)

User (needs --token or PUSHRING_TOKEN, except login):
  login <id> --password P [-q]               open a session; -q prints only the token
  logout                                     revoke the session of --token
  whoami                                     show the session of --token

Anyone with a credential:
  group show <gid>                           members and publishers of a group
  group presence <gid>                       the members connected now, one a line, then their
                                             count (the admin or a member)
  user presence <id>                         online or offline, and the nodes a user is
                                             connected to (the admin, the user, or anyone
                                             sharing a group with her)
    (presence names the nodes that did not answer, if any: their clients are not counted)
  publish group <gid> <text…>                send to every member of a group
  publish user <id> <text…>                  send a direct message
      --qos N     QoS 0, 1 or 2 (default: the server's)
      --retain    (group) the group's retained message; empty text clears it
      --base64    <text> is base64-encoded bytes, sent as payload_base64
      text "-"    read the payload from stdin
    (publish authenticates as --device/--key if given, else --token, else the admin key)
  route <id>                                 the home node of a user or device
  cluster                                    the nodes of the cluster

Local (no server):
  gossip-key [--out FILE]                    a new random 32-byte gossip key, base64, for
                                             pushring --gossip-key-file; --out writes FILE
                                             (mode 0600, never overwritten), else stdout
  nats-key <seed-file>                       create a node's NATS nkey seed (0600) if missing; print its public key
  nats-config [--cluster C] [--node <id>=<public-nkey>]... [--authorized-keys-file F]
                                             print the authorization block of a nats-server
                                             giving each node pushring's permissions
  dev-cert [--dir DATA_DIR] [--device ID ...] write a throwaway CA, a certificate for
                                             127.0.0.1/::1/localhost and device client
                                             certificates into DATA_DIR/tls (30 days)

Global flags:
  --server URL          HTTP API (default http://127.0.0.1:8080, env PUSHRING_SERVER)
  --admin-key KEY       admin key (env PUSHRING_ADMIN_KEY; a flag is readable by
                        every local user, so prefer the env or the file)
  --admin-key-file F    read the admin key from F (e.g. ./data/admin.key)
  --token T             session token (env PUSHRING_TOKEN)
  --device ID --key K   authenticate as a device (HTTP basic auth; env PUSHRING_DEVICE,
                        PUSHRING_DEVICE_KEY)
  --json                print the raw JSON response
  --timeout D           per-request timeout (default 30s)
  --cacert F            trust the CA in PEM file F for an https:// server (env PUSHRING_CACERT)

API errors print "error: <code>: <message>" on stderr and exit 1; usage errors exit 2.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// globals are the flags every command accepts.
type globals struct {
	server       string
	adminKey     string
	adminKeyFile string
	token        string
	device       string
	key          string
	json         bool
	timeout      time.Duration
	caCert       string
}

// register adds the global flags to fs. The current values are the defaults,
// so registering on a second FlagSet keeps what the first one parsed.
func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.server, "server", g.server, "HTTP API base URL")
	fs.StringVar(&g.adminKey, "admin-key", g.adminKey, "admin key")
	fs.StringVar(&g.adminKeyFile, "admin-key-file", g.adminKeyFile, "file holding the admin key")
	fs.StringVar(&g.token, "token", g.token, "session token")
	fs.StringVar(&g.device, "device", g.device, "device id (HTTP basic auth)")
	fs.StringVar(&g.key, "key", g.key, "device key (HTTP basic auth)")
	fs.BoolVar(&g.json, "json", g.json, "print the raw JSON response")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "per-request timeout")
	fs.StringVar(&g.caCert, "cacert", g.caCert, "PEM CA file to trust for an https:// --server (e.g. <data-dir>/tls/ca.pem)")
}

// cli is one invocation: its streams, global flags and client.
type cli struct {
	g      globals
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	warned map[string]bool // secret flags already warned about
}

// usageError is a mistake on the command line: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// command is one subcommand. args are the words after its name.
type command struct {
	usage string
	run   func(ctx context.Context, c *cli, args []string) error
}

var commands = map[string]command{
	"user create":            {"user create <id> --password P", cmdUserCreate},
	"user list":              {"user list [--prefix P] [--limit N] [--cursor C] [--all] [-q]", listCmd("users", listUsers)},
	"user show":              {"user show <id>", cmdUserShow},
	"user delete":            {"user delete <id>", deleteCmd("user")},
	"user password":          {"user password <id> [--revoke-sessions]", cmdUserPassword},
	"user groups":            {"user groups <id>", groupsCmd(false)},
	"user sessions":          {"user sessions <id>", cmdUserSessions},
	"user revoke-sessions":   {"user revoke-sessions <id>", cmdUserRevokeSessions},
	"user presence":          {"user presence <id>", cmdUserPresence},
	"device create":          {"device create <id> [-q]", cmdDeviceCreate},
	"device list":            {"device list [--prefix P] [--limit N] [--cursor C] [--all] [-q]", listCmd("devices", listDevices)},
	"device show":            {"device show <id>", cmdDeviceShow},
	"device delete":          {"device delete <id>", deleteCmd("device")},
	"device rotate-key":      {"device rotate-key <id> [-q]", cmdDeviceRotateKey},
	"device groups":          {"device groups <id>", groupsCmd(true)},
	"group create":           {"group create <gid> [--members-can-publish]", cmdGroupCreate},
	"group list":             {"group list [--prefix P] [--limit N] [--cursor C] [--all] [-q]", listCmd("groups", listGroups)},
	"group delete":           {"group delete <gid>", deleteCmd("group")},
	"group add-member":       {"group add-member <gid> <id>", roleCmd("members", true)},
	"group remove-member":    {"group remove-member <gid> <id>", roleCmd("members", false)},
	"group add-publisher":    {"group add-publisher <gid> <id>", roleCmd("publishers", true)},
	"group remove-publisher": {"group remove-publisher <gid> <id>", roleCmd("publishers", false)},
	"group show":             {"group show <gid>", cmdGroupShow},
	"group presence":         {"group presence <gid>", cmdGroupPresence},
	"webhook add":            {"webhook add <url> [--event T]... [-q]", cmdWebhookAdd},
	"webhook list":           {"webhook list [-q]", cmdWebhookList},
	"webhook delete":         {"webhook delete <id>", deleteCmd("webhook")},
	"login":                  {"login <id> --password P [-q]", cmdLogin},
	"logout":                 {"logout", cmdLogout},
	"whoami":                 {"whoami", cmdWhoami},
	"publish group":          {"publish group <gid> <text…> [--qos N] [--base64]", publishCmd(true)},
	"publish user":           {"publish user <id> <text…> [--qos N] [--base64]", publishCmd(false)},
	"route":                  {"route <id>", cmdRoute},
	"cluster":                {"cluster", cmdCluster},
	"gossip-key":             {"gossip-key [--out FILE]", cmdGossipKey},
	"nats-key":               {"nats-key <seed-file>", cmdNATSKey},
	"nats-config":            {"nats-config [--cluster C] [--node <id>=<public-nkey>]... [--authorized-keys-file F]", cmdNATSConfig},
	"dev-cert":               {"dev-cert [--dir DATA_DIR] [--device ID ...]", cmdDevCert},
}

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	c.g = globals{
		server:       "http://127.0.0.1:8080",
		adminKey:     getenv("PUSHRING_ADMIN_KEY"),
		adminKeyFile: getenv("PUSHRING_ADMIN_KEY_FILE"),
		token:        getenv("PUSHRING_TOKEN"),
		device:       getenv("PUSHRING_DEVICE"),
		key:          getenv("PUSHRING_DEVICE_KEY"),
		caCert:       getenv("PUSHRING_CACERT"),
		timeout:      30 * time.Second,
	}
	if s := getenv("PUSHRING_SERVER"); s != "" {
		c.g.server = s
	}

	top := flag.NewFlagSet("pushctl", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	c.g.register(top)
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usageText)
			return 0
		}
		return c.fail(usageError{err.Error()}, "")
	}
	c.warnSecrets(top)
	rest := top.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, usageText)
		return 2
	}
	if rest[0] == "help" {
		fmt.Fprint(stdout, usageText)
		return 0
	}

	name := rest[0]
	if _, ok := commands[name]; !ok && len(rest) > 1 {
		name = rest[0] + " " + rest[1]
	}
	cmd, ok := commands[name]
	if !ok {
		return c.fail(usagef("unknown command %q", strings.Join(rest[:min(2, len(rest))], " ")), "")
	}
	sub := rest[len(strings.Fields(name)):]
	if err := cmd.run(ctx, c, sub); err != nil {
		return c.fail(err, cmd.usage)
	}
	return 0
}

// fail prints err the way the exit status says and returns that status.
func (c *cli) fail(err error, usage string) int {
	var ue usageError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(c.stderr, "error: %s\n", ue.msg)
		if usage != "" {
			fmt.Fprintf(c.stderr, "usage: pushctl %s\n", usage)
		} else {
			fmt.Fprintln(c.stderr, `run "pushctl help" for the list of commands`)
		}
		return 2
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprintf(c.stdout, "usage: pushctl %s\n", usage)
		return 0
	default:
		// *APIError prints as "<code>: <message>".
		fmt.Fprintf(c.stderr, "error: %s\n", err)
		return 1
	}
}

// flags returns a FlagSet for one command with the global flags on it.
func (c *cli) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.g.register(fs)
	return fs
}

// parse parses flags anywhere among args and returns the positional words.
// It wants between lo and hi of them (hi < 0: no upper bound).
func (c *cli) parse(fs *flag.FlagSet, args []string, lo, hi int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...) // "--": everything after is positional
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	c.warnSecrets(fs)
	if len(pos) < lo || (hi >= 0 && len(pos) > hi) {
		switch {
		case len(pos) < lo:
			return nil, usageError{"missing arguments"}
		default:
			return nil, usagef("unexpected argument %q", pos[hi])
		}
	}
	return pos, nil
}

// secretFlags are the flags whose value is a secret, with the quiet way
// to give it: /proc/<pid>/cmdline shows a flag to every local user.
var secretFlags = map[string]string{
	"admin-key": "PUSHRING_ADMIN_KEY or --admin-key-file",
	"token":     "PUSHRING_TOKEN",
	"key":       "PUSHRING_DEVICE_KEY",
	"password":  "PUSHRING_PASSWORD",
}

// warnSecrets warns once for each secret flag fs parsed from the command
// line (the top-level and the command's FlagSet share the global flags).
func (c *cli) warnSecrets(fs *flag.FlagSet) {
	fs.Visit(func(f *flag.Flag) {
		if env, ok := secretFlags[f.Name]; ok && !c.warned[f.Name] {
			if c.warned == nil {
				c.warned = map[string]bool{}
			}
			c.warned[f.Name] = true
			fmt.Fprintf(c.stderr, "warning: --%s on the command line is readable by every local user; use %s instead\n", f.Name, env)
		}
	})
}

// client builds the API client from the global flags.
func (c *cli) client() (*client.Client, error) {
	key := c.g.adminKey
	if key == "" && c.g.adminKeyFile != "" {
		// The node accepts every key of its file; the first is the
		// current one (the others are kept while a rotation runs).
		keys, _, err := secretfile.Lines(c.g.adminKeyFile)
		if err != nil {
			return nil, fmt.Errorf("admin key file: %w", err)
		}
		key = keys[0]
	}
	if (c.g.device == "") != (c.g.key == "") {
		return nil, usageError{"--device and --key go together"}
	}
	server := c.g.server
	if !strings.Contains(server, "://") {
		server = "http://" + server
	}
	cl := &client.Client{BaseURL: server, AdminKey: key, Token: c.g.token, DeviceID: c.g.device, DeviceKey: c.g.key}
	if c.g.caCert != "" {
		pem, err := os.ReadFile(c.g.caCert)
		if err != nil {
			return nil, fmt.Errorf("--cacert: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--cacert: %s holds no PEM certificate", c.g.caCert)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		cl.HTTP = &http.Client{Transport: tr}
	}
	return cl, nil
}

// call runs fn with a client and the per-request timeout, then prints its
// result: raw JSON with --json, else through human.
func call[T interface{ Body() []byte }](ctx context.Context, c *cli, fn func(context.Context, *client.Client) (T, error), human func(io.Writer, T)) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.g.timeout)
	defer cancel()
	res, err := fn(ctx, cl)
	if err != nil {
		return flagHint(err)
	}
	if c.g.json {
		return printJSON(c.stdout, res.Body())
	}
	human(c.stdout, res)
	return nil
}

// flagHint names the flags and variables that give the credential a call
// lacked.
func flagHint(err error) error {
	switch {
	case errors.Is(err, client.ErrNoAdminKey):
		return fmt.Errorf("%w: this call needs the admin key (--admin-key, --admin-key-file or PUSHRING_ADMIN_KEY)", client.ErrNoCredentials)
	case errors.Is(err, client.ErrNoToken):
		return fmt.Errorf("%w: this call needs a session token (--token or PUSHRING_TOKEN; get one with 'pushctl login')", client.ErrNoCredentials)
	case errors.Is(err, client.ErrNoPublisher):
		return fmt.Errorf("%w: publishing needs --device/--key, --token or the admin key", client.ErrNoCredentials)
	case errors.Is(err, client.ErrNoSelf):
		return fmt.Errorf("%w: this call needs the admin key (--admin-key, --admin-key-file or PUSHRING_ADMIN_KEY), or the user's own --token (PUSHRING_TOKEN) or the device's own --device/--key", client.ErrNoCredentials)
	}
	return err
}

// --- commands ---------------------------------------------------------------

func cmdUserCreate(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("user create")
	password := fs.String("password", c.getenv("PUSHRING_PASSWORD"), "password (env PUSHRING_PASSWORD)")
	pos, err := c.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if *password == "" {
		return usageError{"--password is required"}
	}
	return call(ctx, c, func(ctx context.Context, cl *client.Client) (*client.User, error) {
		return cl.CreateUser(ctx, pos[0], *password)
	}, func(w io.Writer, u *client.User) { fmt.Fprintf(w, "created user %s\n", or(u.ID, pos[0])) })
}

func cmdDeviceCreate(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("device create")
	quiet := quietFlag(fs)
	pos, err := c.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	return call(ctx, c, func(ctx context.Context, cl *client.Client) (*client.Device, error) {
		return cl.CreateDevice(ctx, pos[0])
	}, func(w io.Writer, d *client.Device) {
		if *quiet {
			fmt.Fprintln(w, d.Key)
			return
		}
		printDevice(w, d)
	})
}

func cmdGroupCreate(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("group create")
	mcp := fs.Bool("members-can-publish", false, "members may publish to the group")
	pos, err := c.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	return call(ctx, c, func(ctx context.Context, cl *client.Client) (*client.Group, error) {
		return cl.CreateGroup(ctx, pos[0], *mcp)
	}, func(w io.Writer, g *client.Group) {
		fmt.Fprintf(w, "created group %s (members can publish: %s)\n", or(g.ID, pos[0]), yesNo(*mcp))
	})
}

func roleCmd(role string, on bool) func(context.Context, *cli, []string) error {
	return func(ctx context.Context, c *cli, args []string) error {
		pos, err := c.parse(c.flags("group"), args, 2, 2)
		if err != nil {
			return err
		}
		gid, id := pos[0], pos[1]
		return call(ctx, c, func(ctx context.Context, cl *client.Client) (*client.Ack, error) {
			if role == "members" {
				return cl.SetMember(ctx, gid, id, on)
			}
			return cl.SetPublisher(ctx, gid, id, on)
		}, func(w io.Writer, _ *client.Ack) { fmt.Fprintln(w, roleMessage(gid, id, role, on)) })
	}
}

func cmdGroupShow(ctx context.Context, c *cli, args []string) error {
	pos, err := c.parse(c.flags("group show"), args, 1, 1)
	if err != nil {
		return err
	}
	return call(ctx, c, func(ctx context.Context, cl *client.Client) (*client.Group, error) {
		return cl.Group(ctx, pos[0])
	}, printGroup)
}

func cmdGroupPresence(ctx context.Context, c *cli, args []string) error {
	pos, err := c.parse(c.flags("group presence"), args, 1, 1)
	if err != nil {
		return err
	}
	return call(ctx, c, func(ctx context.Context, cl *client.Client) (*client.GroupPresence, error) {
		return cl.GroupPresence(ctx, pos[0])
	}, printGroupPresence)
}

func cmdUserPresence(ctx context.Context, c *cli, args []string) error {
	pos, err := c.parse(c.flags("user presence"), args, 1, 1)
	if err != nil {
		return err
	}
	return call(ctx, c, func(ctx context.Context, cl *client.Client) (*client.UserPresence, error) {
		return cl.UserPresence(ctx, pos[0])
	}, func(w io.Writer, p *client.UserPresence) { printUserPresence(w, p, pos[0]) })
}

func cmdWebhookAdd(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("webhook add")
	var events []string
	fs.Func("event", "send only events of this type (repeatable; default: every type)", func(v string) error {
		if v == "" {
			return errors.New("empty event type")
		}
		events = append(events, v)
		return nil
	})
	quiet := quietFlag(fs)
	pos, err := c.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	return call(ctx, c, func(ctx context.Context, cl *client.Client) (*client.Webhook, error) {
		return cl.CreateWebhook(ctx, pos[0], events)
	}, func(w io.Writer, h *client.Webhook) {
		if *quiet {
			fmt.Fprintln(w, h.Secret)
			return
		}
		printWebhook(w, h)
	})
}

func cmdWebhookList(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("webhook list")
	quiet := quietFlag(fs)
	if _, err := c.parse(fs, args, 0, 0); err != nil {
		return err
	}
	return call(ctx, c, func(ctx context.Context, cl *client.Client) (*client.WebhookList, error) {
		return cl.ListWebhooks(ctx)
	}, func(w io.Writer, l *client.WebhookList) {
		rows := make([][]string, 0, len(l.Webhooks))
		for _, h := range l.Webhooks {
			rows = append(rows, []string{h.ID, timestamp(h.Created), h.URL, eventTypes(h.Events)})
		}
		printRows(w, rows, *quiet)
	})
}

// listPage is one page of a list call, in the form list commands print.
type listPage struct {
	body []byte     // the response body
	rows [][]string // one per entry: its id, then the other columns
	next string     // the next page's cursor; "" on the last page
}

func listUsers(ctx context.Context, cl *client.Client, o client.ListOptions) (listPage, error) {
	l, err := cl.ListUsers(ctx, o)
	if err != nil {
		return listPage{}, err
	}
	p := listPage{body: l.Body(), next: l.NextCursor}
	for _, u := range l.Users {
		p.rows = append(p.rows, []string{u.ID, timestamp(u.Created)})
	}
	return p, nil
}

func listDevices(ctx context.Context, cl *client.Client, o client.ListOptions) (listPage, error) {
	l, err := cl.ListDevices(ctx, o)
	if err != nil {
		return listPage{}, err
	}
	p := listPage{body: l.Body(), next: l.NextCursor}
	for _, d := range l.Devices {
		p.rows = append(p.rows, []string{d.ID, timestamp(d.Created)})
	}
	return p, nil
}

func listGroups(ctx context.Context, cl *client.Client, o client.ListOptions) (listPage, error) {
	l, err := cl.ListGroups(ctx, o)
	if err != nil {
		return listPage{}, err
	}
	p := listPage{body: l.Body(), next: l.NextCursor}
	for _, g := range l.Groups {
		row := []string{g.ID, timestamp(g.Created)}
		if g.MembersCanPublish {
			row = append(row, "members can publish")
		}
		p.rows = append(p.rows, row)
	}
	return p, nil
}

// listing is the result of a list command: one page, or with --all every
// page from the first asked for.
type listing struct {
	field  string // the entries' field in a page: users, devices, groups
	bodies [][]byte
	rows   [][]string
	next   string
}

// Body is the page's body as it came or, for several pages, one body in
// the same form with the entries of them all.
func (l *listing) Body() []byte {
	if len(l.bodies) == 1 {
		return l.bodies[0]
	}
	all := []json.RawMessage{}
	for _, b := range l.bodies {
		var page map[string]json.RawMessage
		var entries []json.RawMessage
		if json.Unmarshal(b, &page) == nil && json.Unmarshal(page[l.field], &entries) == nil {
			all = append(all, entries...)
		}
	}
	b, _ := json.Marshal(map[string]any{l.field: all, "next_cursor": l.next})
	return b
}

// listCmd is user list, device list and group list: field names the
// entries in a page, page fetches one.
func listCmd(field string, page func(context.Context, *client.Client, client.ListOptions) (listPage, error)) func(context.Context, *cli, []string) error {
	return func(ctx context.Context, c *cli, args []string) error {
		fs := c.flags(field)
		var o client.ListOptions
		fs.StringVar(&o.Prefix, "prefix", "", "only the ids that start with this")
		fs.StringVar(&o.Cursor, "cursor", "", "start at this page (the cursor a previous page printed)")
		fs.IntVar(&o.Limit, "limit", 0, "ids per page, 1 to 500 (default: the server's, 100)")
		all := fs.Bool("all", false, "follow the pages to the last one")
		quiet := quietFlag(fs)
		if _, err := c.parse(fs, args, 0, 0); err != nil {
			return err
		}
		if o.Limit < 0 || o.Limit > 500 || isSet(fs, "limit") && o.Limit == 0 {
			return usagef("--limit must be 1 to 500")
		}
		var res listing
		err := call(ctx, c, func(_ context.Context, cl *client.Client) (*listing, error) {
			res = listing{field: field}
			for {
				// --timeout bounds each page, not all of them.
				pctx, cancel := context.WithTimeout(ctx, c.g.timeout)
				p, err := page(pctx, cl, o)
				cancel()
				if err != nil {
					return nil, err
				}
				res.bodies = append(res.bodies, p.body)
				res.rows = append(res.rows, p.rows...)
				res.next = p.next
				if !*all || p.next == "" {
					return &res, nil
				}
				if p.next == o.Cursor {
					return nil, fmt.Errorf("the server answered cursor %q with itself as the next one", p.next)
				}
				o.Cursor = p.next
			}
		}, func(w io.Writer, l *listing) { printRows(w, l.rows, *quiet) })
		if err == nil && res.next != "" {
			fmt.Fprintf(c.stderr, "more: --cursor %s\n", res.next)
		}
		return err
	}
}

// isSet reports whether the command line gave flag name.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func cmdUserShow(ctx context.Context, c *cli, args []string) error {
	pos, err := c.parse(c.flags("user show"), args, 1, 1)
	if err != nil {
		return err
	}
	return call(ctx, c, func(ctx context.Context, cl *client.Client) (*client.User, error) {
		return cl.User(ctx, pos[0])
	}, func(w io.Writer, u *client.User) { printPrincipal(w, or(u.ID, pos[0]), or(u.Kind, "user"), u.Created) })
}

func cmdDeviceShow(ctx context.Context, c *cli, args []string) error {
	pos, err := c.parse(c.flags("device show"), args, 1, 1)
	if err != nil {
		return err
	}
	return call(ctx, c, func(ctx context.Context, cl *client.Client) (*client.Device, error) {
		return cl.Device(ctx, pos[0])
	}, func(w io.Writer, d *client.Device) {
		printPrincipal(w, or(d.ID, pos[0]), or(d.Kind, "device"), d.Created)
	})
}

// deleteCmd is user delete, device delete, group delete and webhook
// delete.
func deleteCmd(what string) func(context.Context, *cli, []string) error {
	return func(ctx context.Context, c *cli, args []string) error {
		pos, err := c.parse(c.flags(what+" delete"), args, 1, 1)
		if err != nil {
			return err
		}
		return call(ctx, c, func(ctx context.Context, cl *client.Client) (*client.Ack, error) {
			switch what {
			case "user":
				return cl.DeleteUser(ctx, pos[0])
			case "device":
				return cl.DeleteDevice(ctx, pos[0])
			case "webhook":
				return cl.DeleteWebhook(ctx, pos[0])
			}
			return cl.DeleteGroup(ctx, pos[0])
		}, func(w io.Writer, _ *client.Ack) { fmt.Fprintf(w, "deleted %s %s\n", what, pos[0]) })
	}
}

// maxPasswordLine bounds what user password reads of stdin.
const maxPasswordLine = 64 << 10

func cmdUserPassword(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("user password")
	revoke := fs.Bool("revoke-sessions", false, "end the user's other login sessions (all of them with the admin key)")
	pos, err := c.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	// Check the credential before reading stdin: the client sends the
	// user's token if given (the old password is then needed), else the
	// admin key.
	cl, err := c.client()
	if err != nil {
		return err
	}
	if cl.Token == "" && cl.AdminKey == "" {
		return flagHint(client.ErrNoSelf)
	}
	asUser := cl.Token != ""
	p := client.PasswordChange{
		Password:       c.getenv("PUSHRING_PASSWORD"),
		OldPassword:    c.getenv("PUSHRING_OLD_PASSWORD"),
		RevokeSessions: *revoke,
	}
	// The passwords not in the environment come from stdin, one a line.
	in := bufio.NewReader(io.LimitReader(c.stdin, maxPasswordLine))
	readLine := func(what string) (string, error) {
		if f, ok := c.stdin.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				fmt.Fprintf(c.stderr, "%s for %s: ", what, pos[0])
			}
		}
		line, err := in.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("reading stdin: %w", err)
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	if p.Password == "" {
		if p.Password, err = readLine("new password"); err != nil {
			return err
		}
		if p.Password == "" {
			return usageError{"no new password: set PUSHRING_PASSWORD or write it on stdin"}
		}
	}
	if asUser && p.OldPassword == "" {
		if p.OldPassword, err = readLine("old password"); err != nil {
			return err
		}
		if p.OldPassword == "" {
			return usageError{"no old password (needed with --token, not with the admin key): set PUSHRING_OLD_PASSWORD or write it on stdin after the new one"}
		}
	}
	return call(ctx, c, func(ctx context.Context, cl *client.Client) (*client.Ack, error) {
		return cl.SetPassword(ctx, pos[0], p)
	}, func(w io.Writer, _ *client.Ack) {
		switch {
		case !*revoke:
			fmt.Fprintf(w, "changed the password of %s\n", pos[0])
		case asUser:
			fmt.Fprintf(w, "changed the password of %s and ended its other login sessions\n", pos[0])
		default:
			fmt.Fprintf(w, "changed the password of %s and ended all its login sessions\n", pos[0])
		}
	})
}

func cmdDeviceRotateKey(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("device rotate-key")
	quiet := quietFlag(fs)
	pos, err := c.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	return call(ctx, c, func(ctx context.Context, cl *client.Client) (*client.Device, error) {
		return cl.RotateKey(ctx, pos[0])
	}, func(w io.Writer, d *client.Device) {
		if *quiet {
			fmt.Fprintln(w, d.Key)
			return
		}
		printDevice(w, d)
	})
}

// groupsCmd is user groups and device groups.
func groupsCmd(device bool) func(context.Context, *cli, []string) error {
	return func(ctx context.Context, c *cli, args []string) error {
		pos, err := c.parse(c.flags("groups"), args, 1, 1)
		if err != nil {
			return err
		}
		return call(ctx, c, func(ctx context.Context, cl *client.Client) (*client.Memberships, error) {
			if device {
				return cl.DeviceGroups(ctx, pos[0])
			}
			return cl.UserGroups(ctx, pos[0])
		}, printMemberships)
	}
}

func cmdUserSessions(ctx context.Context, c *cli, args []string) error {
	pos, err := c.parse(c.flags("user sessions"), args, 1, 1)
	if err != nil {
		return err
	}
	return call(ctx, c, func(ctx context.Context, cl *client.Client) (*client.LoginSessions, error) {
		return cl.UserSessions(ctx, pos[0])
	}, func(w io.Writer, s *client.LoginSessions) { printLoginSessions(w, s, time.Now()) })
}

func cmdUserRevokeSessions(ctx context.Context, c *cli, args []string) error {
	pos, err := c.parse(c.flags("user revoke-sessions"), args, 1, 1)
	if err != nil {
		return err
	}
	return call(ctx, c, func(ctx context.Context, cl *client.Client) (*client.Ack, error) {
		return cl.RevokeSessions(ctx, pos[0])
	}, func(w io.Writer, _ *client.Ack) { fmt.Fprintf(w, "ended every login session of %s\n", pos[0]) })
}

func cmdLogin(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("login")
	password := fs.String("password", c.getenv("PUSHRING_PASSWORD"), "password (env PUSHRING_PASSWORD)")
	quiet := quietFlag(fs)
	pos, err := c.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if *password == "" {
		return usageError{"--password is required"}
	}
	return call(ctx, c, func(ctx context.Context, cl *client.Client) (*client.Session, error) {
		return cl.Login(ctx, pos[0], *password)
	}, func(w io.Writer, s *client.Session) {
		if *quiet {
			fmt.Fprintln(w, s.Token)
			return
		}
		printSession(w, s, time.Now())
	})
}

func cmdLogout(ctx context.Context, c *cli, args []string) error {
	if _, err := c.parse(c.flags("logout"), args, 0, 0); err != nil {
		return err
	}
	return call(ctx, c, func(ctx context.Context, cl *client.Client) (*client.Ack, error) {
		return cl.Logout(ctx)
	}, func(w io.Writer, _ *client.Ack) { fmt.Fprintln(w, "logged out") })
}

func cmdWhoami(ctx context.Context, c *cli, args []string) error {
	if _, err := c.parse(c.flags("whoami"), args, 0, 0); err != nil {
		return err
	}
	return call(ctx, c, func(ctx context.Context, cl *client.Client) (*client.SessionInfo, error) {
		return cl.CurrentSession(ctx)
	}, func(w io.Writer, s *client.SessionInfo) { printSessionInfo(w, s, time.Now()) })
}

func publishCmd(group bool) func(context.Context, *cli, []string) error {
	return func(ctx context.Context, c *cli, args []string) error {
		fs := c.flags("publish")
		qos := fs.Int("qos", -1, "QoS 0, 1 or 2 (default: the server's)")
		retain := fs.Bool("retain", false, "make it the group's retained message")
		b64 := fs.Bool("base64", false, "the text is base64-encoded bytes")
		pos, err := c.parse(fs, args, 2, -1)
		if err != nil {
			return err
		}
		if *qos < -1 || *qos > 2 {
			return usagef("--qos must be 0, 1 or 2")
		}
		p, err := makePayload(strings.Join(pos[1:], " "), *b64, c.stdin)
		if err != nil {
			return err
		}
		p.QoS, p.Retain = *qos, *retain
		to := pos[0]
		return call(ctx, c, func(ctx context.Context, cl *client.Client) (*client.Published, error) {
			if group {
				return cl.PublishGroup(ctx, to, p)
			}
			return cl.PublishUser(ctx, to, p)
		}, func(w io.Writer, m *client.Published) { fmt.Fprintf(w, "accepted message %s\n", m.ID) })
	}
}

// maxStdin bounds a payload read from stdin.
const maxStdin = 16 << 20

// makePayload builds the payload of publish from its text argument: "-"
// reads stdin (sent as text if it is UTF-8, else as base64); with b64 the
// text must already be base64.
func makePayload(text string, b64 bool, stdin io.Reader) (client.Payload, error) {
	if text == "-" {
		b, err := io.ReadAll(io.LimitReader(stdin, maxStdin))
		if err != nil {
			return client.Payload{}, fmt.Errorf("reading stdin: %w", err)
		}
		if b64 {
			text = strings.TrimSpace(string(b))
		} else if utf8.Valid(b) {
			return client.Payload{Text: string(b)}, nil
		} else {
			return client.Payload{Base64: base64.StdEncoding.EncodeToString(b), IsBase64: true}, nil
		}
	}
	if b64 {
		if _, err := base64.StdEncoding.DecodeString(text); err != nil {
			return client.Payload{}, usagef("--base64: the text is not valid base64: %v", err)
		}
		return client.Payload{Base64: text, IsBase64: true}, nil
	}
	return client.Payload{Text: text}, nil
}

func cmdRoute(ctx context.Context, c *cli, args []string) error {
	pos, err := c.parse(c.flags("route"), args, 1, 1)
	if err != nil {
		return err
	}
	return call(ctx, c, func(ctx context.Context, cl *client.Client) (*client.Route, error) {
		return cl.Route(ctx, pos[0])
	}, func(w io.Writer, r *client.Route) { printRoute(w, r, pos[0]) })
}

func cmdCluster(ctx context.Context, c *cli, args []string) error {
	if _, err := c.parse(c.flags("cluster"), args, 0, 0); err != nil {
		return err
	}
	return call(ctx, c, func(ctx context.Context, cl *client.Client) (*client.Cluster, error) {
		return cl.Cluster(ctx)
	}, printCluster)
}

// quietFlag registers -q and --quiet on the same variable.
func quietFlag(fs *flag.FlagSet) *bool {
	q := new(bool)
	fs.BoolVar(q, "q", false, "print only the essential value")
	fs.BoolVar(q, "quiet", false, "print only the essential value")
	return q
}

// printJSON writes the response body as indented JSON (or "{}" for an
// empty body, so the output is always JSON).
func printJSON(w io.Writer, raw []byte) error {
	if len(strings.TrimSpace(string(raw))) == 0 {
		_, err := fmt.Fprintln(w, "{}")
		return err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		buf.Reset()
		buf.Write(raw) // not JSON: print it as it came
	}
	if !bytes.HasSuffix(buf.Bytes(), []byte("\n")) {
		buf.WriteByte('\n')
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// cmdGossipKey makes a gossip key: 32 random bytes (AES-256), base64, one
// line, the format of pushring's --gossip-key-file. An existing file is
// never overwritten: it may be the key file of a running cluster, and
// losing its key would cut the node off at its next reload.
func cmdGossipKey(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("gossip-key")
	out := fs.String("out", "", "write the key to this file (mode 0600), which must not exist")
	if _, err := c.parse(fs, args, 0, 0); err != nil {
		return err
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return err
	}
	line := base64.StdEncoding.EncodeToString(raw[:]) + "\n"
	if *out == "" {
		_, err := io.WriteString(c.stdout, line)
		return err
	}
	err := secretfile.WriteNew(*out, []byte(line))
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s exists: not overwritten (to rotate, print a new key and add it as a line of the file)", *out)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "wrote a new gossip key to %s\n", *out)
	return nil
}
