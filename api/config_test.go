package api

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/store"
)

func TestDefaultConfigIsZeroWithDefaults(t *testing.T) {
	got, want := Config{}.withDefaults(), DefaultConfig()
	if got.Registry == nil {
		t.Error("nil Registry not replaced by a new one")
	}
	if reflect.ValueOf(got.Now).Pointer() != reflect.ValueOf(want.Now).Pointer() {
		t.Error("Now is not DefaultConfig's time.Now")
	}
	// reflect.DeepEqual cannot compare funcs, and the registry is new.
	testutil.CheckDefaults(t, got, want, want.withDefaults().validate(), Config{}.Validate(), "Registry", "Now")
}

func TestWithDefaultsKeepsSetFields(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := Config{SessionTTL: time.Hour, LoginRate: -1, PrivatePrefix: "/p//", Registry: reg}.withDefaults()
	if c.SessionTTL != time.Hour || c.LoginRate != -1 || c.Registry != reg {
		t.Errorf("set fields changed: %+v", c)
	}
	if c.PrivatePrefix != "/p" {
		t.Errorf("PrivatePrefix %q, want trailing slashes dropped", c.PrivatePrefix)
	}
	if c.LoginBurst != 50 || c.MaxBodyBytes != 1<<20 || c.MaxPayloadBytes != 256<<10 {
		t.Errorf("zero fields not filled: %+v", c)
	}
	h := Config{LoginAccountFailures: -1, HTTP: HTTPConfig{MaxConns: -1, ReadTimeout: time.Second}}.withDefaults()
	if h.LoginAccountFailures != -1 || h.HTTP.MaxConns != -1 || h.HTTP.ReadTimeout != time.Second {
		t.Errorf("set fields changed: %+v", h)
	}
	if h.HTTP.WriteTimeout != 30*time.Second || h.LoginAccountMaxBackoff != 15*time.Minute {
		t.Errorf("zero fields not filled: %+v", h)
	}
	if err := (HTTPConfig{}).Validate(); err != nil {
		t.Errorf("zero HTTPConfig: %v", err)
	}
}

func TestValidate(t *testing.T) {
	deps := Deps{Publisher: dropPublisher{}, ACL: store.NewDirectory(store.NewMemory()), Cluster: twoNodes{}}
	for _, tc := range []struct {
		field string
		mod   func(*Config)
	}{
		{"SessionTTL", func(c *Config) { c.SessionTTL = -time.Hour }},
		{"MaxBodyBytes", func(c *Config) { c.MaxBodyBytes = -1 }},
		{"MaxPayloadBytes", func(c *Config) { c.MaxPayloadBytes = -1 }},
		{"PrivatePrefix", func(c *Config) { c.PrivatePrefix = "/p/+" }},
		{"PrivatePrefix", func(c *Config) { c.PrivatePrefix = "#" }},
		{"LoginRate", func(c *Config) { c.LoginRate = math.NaN() }},
		{"LoginBurst", func(c *Config) { c.LoginBurst = -1 }},
		{"LoginAccountBackoff", func(c *Config) { c.LoginAccountBackoff = -time.Second }},
		{"LoginAccountMaxBackoff", func(c *Config) { c.LoginAccountMaxBackoff = -time.Second }},
		{"LoginAccountMaxBackoff", func(c *Config) { c.LoginAccountBackoff, c.LoginAccountMaxBackoff = time.Minute, time.Second }},
		{"HTTP.ReadHeaderTimeout", func(c *Config) { c.HTTP.ReadHeaderTimeout = -1 }},
		{"HTTP.ReadTimeout", func(c *Config) { c.HTTP.ReadTimeout = -1 }},
		{"HTTP.WriteTimeout", func(c *Config) { c.HTTP.WriteTimeout = -1 }},
		{"HTTP.IdleTimeout", func(c *Config) { c.HTTP.IdleTimeout = -1 }},
		{"HTTP.MaxHeaderBytes", func(c *Config) { c.HTTP.MaxHeaderBytes = -1 }},
		{"HTTP.MaxHeaderBytes", func(c *Config) { c.HTTP.MaxHeaderBytes = 1 << 30 }},
	} {
		cfg := DefaultConfig()
		tc.mod(&cfg)
		err := cfg.withDefaults().validate()
		if err := testutil.ConfigError(err, ErrInvalidConfig, "api: ", tc.field); err != nil {
			t.Error(err)
			continue
		}
		if a, err := New(cfg, store.NewMemory(), deps); !errors.Is(err, ErrInvalidConfig) || a != nil {
			t.Errorf("%s: New returned %v, %v", tc.field, a, err)
		}
	}
}

// A Registry holding another collector under one of the API's metric
// names is refused, not a panic.
func TestNewRefusesConflictingRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "pushring_http_errors_total", Help: "something else"}))
	cfg := DefaultConfig()
	cfg.Registry = reg
	deps := Deps{Publisher: dropPublisher{}, ACL: store.NewDirectory(store.NewMemory()), Cluster: twoNodes{}}
	a, err := New(cfg, store.NewMemory(), deps)
	if !errors.Is(err, ErrInvalidConfig) || a != nil || !strings.Contains(err.Error(), "Registry") {
		t.Fatalf("New: %v, %v", a, err)
	}
}
