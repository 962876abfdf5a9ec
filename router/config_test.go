package router

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/message"
)

func TestDefaultConfigIsZeroWithDefaults(t *testing.T) {
	got, want := Config{}.withDefaults(), DefaultConfig()
	if reflect.ValueOf(got.Now).Pointer() != reflect.ValueOf(time.Now).Pointer() {
		t.Error("Now is not time.Now")
	}
	// reflect.DeepEqual cannot compare funcs.
	testutil.CheckDefaults(t, got, want, want.withDefaults().validate(), Config{}.Validate(), "Now")
}

// Zero fields are filled one by one, whatever else is set; the values
// with a meaning of their own stay.
func TestWithDefaultsKeepsSetFields(t *testing.T) {
	c := Config{MaxQueued: 5, MaxPacketSize: 1024, MaxUnconfirmed: -1, ConnectRate: -1}.withDefaults()
	if c.MaxQueued != 5 || c.MaxPacketSize != 1024 || c.MaxUnconfirmed != -1 || c.ConnectRate != -1 {
		t.Errorf("set fields changed: %+v", c)
	}
	if c.MaxConnectPacketSize != 1024 {
		t.Errorf("MaxConnectPacketSize %d, want lowered to MaxPacketSize 1024", c.MaxConnectPacketSize)
	}
	if c.MaxInflight != 32 || c.RetryInterval != 30*time.Second || c.PrivatePrefix != "/private" || c.MaxConnections != 0 {
		t.Errorf("zero fields not filled: %+v", c)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		field string
		mod   func(*Config)
	}{
		{"PrivatePrefix", func(c *Config) { c.PrivatePrefix = "/p/+" }},
		{"GroupPrefix", func(c *Config) { c.GroupPrefix = "/g/" }},
		{"ServicePrefix", func(c *Config) { c.ServicePrefix = "/s#" }},
		{"ServicePrefix", func(c *Config) { c.ServicePrefix = "/s\x00" }},
		{"GroupPrefix", func(c *Config) { c.GroupPrefix = c.PrivatePrefix }},
		{"ServicePrefix", func(c *Config) { c.ServicePrefix = c.GroupPrefix }},
		{"MaxPacketSize", func(c *Config) { c.MaxPacketSize = -1 }},
		{"MaxConnectPacketSize", func(c *Config) { c.MaxConnectPacketSize = -1 }},
		{"ConnectTimeout", func(c *Config) { c.ConnectTimeout = -time.Second }},
		{"MaxInflight", func(c *Config) { c.MaxInflight = -1 }},
		{"MaxInflight", func(c *Config) { c.MaxInflight = 65535 }},
		{"MaxQueued", func(c *Config) { c.MaxQueued = -1 }},
		{"MaxQueuedBytes", func(c *Config) { c.MaxQueuedBytes = -1 }},
		{"MaxSubscriptions", func(c *Config) { c.MaxSubscriptions = -1 }},
		{"MaxConnections", func(c *Config) { c.MaxConnections = -1 }},
		{"ConnectRate", func(c *Config) { c.ConnectRate = math.NaN() }},
		{"ConnectBurst", func(c *Config) { c.ConnectBurst = -1 }},
		{"MaxSessionsPerPrincipal", func(c *Config) { c.MaxSessionsPerPrincipal = -1 }},
		{"SessionExpiry", func(c *Config) { c.SessionExpiry = -time.Second }},
		{"WriteTimeout", func(c *Config) { c.WriteTimeout = -time.Second }},
		{"TLSHandshakeTimeout", func(c *Config) { c.TLSHandshakeTimeout = -time.Second }},
		{"MaxOutboundBytes", func(c *Config) { c.MaxOutboundBytes = -1 }},
		{"RetryInterval", func(c *Config) { c.RetryInterval = -time.Second }},
		{"MaxFilterLen", func(c *Config) { c.MaxFilterLen = 143 }},
		{"MaxFilterLen", func(c *Config) { c.MaxFilterLen = -1 }},
		{"MaxSubscriptionBytes", func(c *Config) { c.MaxSubscriptionBytes = c.MaxFilterLen + subscriptionOverhead - 1 }},
		{"PublishRate", func(c *Config) { c.PublishRate = math.NaN() }},
		{"PublishBurst", func(c *Config) { c.PublishBurst = -1 }},
		{"PublishByteRate", func(c *Config) { c.PublishByteRate = math.NaN() }},
		{"PublishByteBurst", func(c *Config) { c.PublishByteBurst = -1 }},
		{"SessionBacklogMessages", func(c *Config) { c.SessionBacklogMessages = -1 }},
		{"SessionBacklogBytes", func(c *Config) { c.SessionBacklogBytes = -1 }},
		{"SessionBacklogAge", func(c *Config) { c.SessionBacklogAge = -time.Second }},
	} {
		cfg := DefaultConfig()
		tc.mod(&cfg)
		err := cfg.withDefaults().validate()
		if err := testutil.ConfigError(err, ErrInvalidConfig, "router: ", tc.field); err != nil {
			t.Error(err)
			continue
		}
		if srv, err := New(cfg, newMemAuth(), newMemACL(), &loopFwd{}, message.NewIDSource("t")); !errors.Is(err, ErrInvalidConfig) || srv != nil {
			t.Errorf("%s: New returned %v, %v", tc.field, srv, err)
		}
	}
	if got, want := (Config{MaxQueued: -1}).Validate().Error(), "router: MaxQueued must be > 0 (got -1)"; got != want {
		t.Errorf("error %q, want %q", got, want)
	}
}

func TestNewRefusesMissingDependencies(t *testing.T) {
	auth, acl, fwd, ids := newMemAuth(), newMemACL(), &loopFwd{}, message.NewIDSource("t")
	for name, call := range map[string]func() (*Server, error){
		"auth": func() (*Server, error) { return New(Config{}, nil, acl, fwd, ids) },
		"acl":  func() (*Server, error) { return New(Config{}, auth, nil, fwd, ids) },
		"fwd":  func() (*Server, error) { return New(Config{}, auth, acl, nil, ids) },
		"ids":  func() (*Server, error) { return New(Config{}, auth, acl, fwd, nil) },
	} {
		if srv, err := call(); !errors.Is(err, ErrInvalidConfig) || srv != nil {
			t.Errorf("nil %s: %v, %v", name, srv, err)
		}
	}
}

// A Registerer that already holds the router's metrics (two servers on
// one registry) is an error from New, not a panic.
func TestNewRefusesTakenRegisterer(t *testing.T) {
	auth, acl, fwd, ids := newMemAuth(), newMemACL(), &loopFwd{}, message.NewIDSource("t")
	cfg := DefaultConfig()
	cfg.Registerer = prometheus.NewRegistry()
	if _, err := New(cfg, auth, acl, fwd, ids); err != nil {
		t.Fatal(err)
	}
	if srv, err := New(cfg, auth, acl, fwd, ids); !errors.Is(err, ErrInvalidConfig) || srv != nil {
		t.Fatalf("second server on one registry: %v, %v", srv, err)
	}
}

// MaxFilterLen's default grows with the prefixes, so that every filter a
// delivery can match stays allowed: "<private>/<id>/group/<gid>" with
// 64-byte ids is 144 bytes with the default prefixes.
func TestMaxFilterLenFollowsPrefixes(t *testing.T) {
	if n := minFilterLen(DefaultConfig()); n != 144 {
		t.Fatalf("minFilterLen %d with the default prefixes, want 144", n)
	}
	long := "/" + strings.Repeat("p", 200)
	c := Config{PrivatePrefix: long}.withDefaults()
	if want := len(long) + 1 + 64 + len("/group/") + 64; c.MaxFilterLen != want {
		t.Fatalf("MaxFilterLen %d with a %d-byte private prefix, want %d", c.MaxFilterLen, len(long), want)
	}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	// The default MaxSubscriptionBytes has room for such a filter too.
	if c.MaxSubscriptionBytes < c.MaxFilterLen+subscriptionOverhead {
		t.Fatalf("MaxSubscriptionBytes %d", c.MaxSubscriptionBytes)
	}
}
