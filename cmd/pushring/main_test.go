package main

import (
	"flag"
	"strings"
	"testing"
)

func TestApplyEnvSetsFlagsAndCommandLineWins(t *testing.T) {
	t.Setenv("PUSHRING_DATA_DIR", "/env/data")
	t.Setenv("PUSHRING_AUTH_TOPIC", "true")
	t.Setenv("PUSHRING_MQTT_ADDR", "127.0.0.1:1999")
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "./data", "")
	authTopic := fs.Bool("auth-topic", false, "")
	mqttAddr := fs.String("mqtt-addr", ":1883", "")
	if err := applyEnv(fs); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse([]string{"--mqtt-addr", "127.0.0.1:2000"}); err != nil {
		t.Fatal(err)
	}
	if *dataDir != "/env/data" || !*authTopic || *mqttAddr != "127.0.0.1:2000" {
		t.Fatalf("data-dir %q auth-topic %v mqtt-addr %q", *dataDir, *authTopic, *mqttAddr)
	}
}

func TestApplyEnvRejectsBadValue(t *testing.T) {
	t.Setenv("PUSHRING_SESSION_TTL", "forever")
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.Duration("session-ttl", 0, "")
	if err := applyEnv(fs); err == nil {
		t.Fatal("bad PUSHRING_SESSION_TTL accepted")
	}
}

func TestRunRejectsStrayArguments(t *testing.T) {
	if err := run([]string{"--data-dir", t.TempDir(), "extra"}); err == nil {
		t.Fatal("stray argument accepted")
	}
}

// A secret from the environment is quiet; the same flag on the command
// line is named for the warning.
func TestSecretsOnCommandLine(t *testing.T) {
	t.Setenv("PUSHRING_ADMIN_KEY", "from-env")
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, ""},
		{[]string{"--data-dir", "x"}, ""},
		{[]string{"--admin-key", "on-the-command-line"}, "admin-key"},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.String("admin-key", "", "")
		fs.String("data-dir", "", "")
		if err := applyEnv(fs); err != nil {
			t.Fatal(err)
		}
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(secretsOnCommandLine(fs), ","); got != c.want {
			t.Errorf("%q: %q, want %q", c.args, got, c.want)
		}
	}
}

// The per-principal limit flags reach router.Config: a value it refuses
// stops run before anything starts, naming the field.
func TestRunRejectsBadRouterLimits(t *testing.T) {
	for _, args := range [][]string{
		{"--max-filter-len", "10"},
		{"--max-subscription-bytes", "100"},
		{"--publish-burst", "-1"},
		{"--publish-bytes-burst", "-1"},
	} {
		err := run(append([]string{"--data-dir", t.TempDir()}, args...))
		if err == nil || !strings.Contains(err.Error(), "router") {
			t.Errorf("%v: %v, want a router config error", args, err)
		}
	}
	t.Setenv("PUSHRING_MAX_FILTER_LEN", "10")
	if err := run([]string{"--data-dir", t.TempDir()}); err == nil || !strings.Contains(err.Error(), "MaxFilterLen") {
		t.Errorf("PUSHRING_MAX_FILTER_LEN=10: %v", err)
	}
}

// The backlog bound flags and their environment equivalents reach
// router.Config: a value it refuses stops run, naming the field.
func TestRunRejectsBadBacklogBounds(t *testing.T) {
	for flag, field := range map[string]string{
		"--session-backlog-messages": "SessionBacklogMessages",
		"--session-backlog-bytes":    "SessionBacklogBytes",
		"--session-backlog-age":      "SessionBacklogAge",
	} {
		value := "-1"
		if field == "SessionBacklogAge" {
			value = "-1s"
		}
		if err := run([]string{"--data-dir", t.TempDir(), flag, value}); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s %s: %v, want an error naming %s", flag, value, err, field)
		}
	}
	t.Setenv("PUSHRING_SESSION_BACKLOG_BYTES", "-5")
	if err := run([]string{"--data-dir", t.TempDir()}); err == nil || !strings.Contains(err.Error(), "SessionBacklogBytes") {
		t.Errorf("PUSHRING_SESSION_BACKLOG_BYTES=-5: %v", err)
	}
}

// --trusted-proxies takes CIDRs and bare addresses (one-address
// prefixes), and refuses anything else.
func TestParsePrefix(t *testing.T) {
	for in, want := range map[string]string{"10.0.0.0/8": "10.0.0.0/8", "10.1.2.3/8": "10.0.0.0/8", "192.0.2.1": "192.0.2.1/32", "fd00::/8": "fd00::/8", "::1": "::1/128"} {
		if p, err := parsePrefix(in); err != nil || p.String() != want {
			t.Errorf("parsePrefix(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, bad := range []string{"", "nonsense", "10.0.0.0/33", "10.0.0.0/"} {
		if _, err := parsePrefix(bad); err == nil {
			t.Errorf("parsePrefix(%q) accepted", bad)
		}
	}
}

// --mqtt-proxy-protocol needs --trusted-proxies: it is refused alone.
func TestRunRejectsProxyProtocolWithoutProxies(t *testing.T) {
	err := run([]string{"--data-dir", t.TempDir(), "--mqtt-proxy-protocol"})
	if err == nil || !strings.Contains(err.Error(), "ProxyProtocol needs TrustedProxies") {
		t.Fatalf("--mqtt-proxy-protocol alone: %v", err)
	}
}
