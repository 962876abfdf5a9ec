package fanout

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
)

func TestDefaultConfigIsZeroWithDefaults(t *testing.T) {
	want := DefaultConfig()
	want.NodeID = "n1"
	testutil.CheckDefaults(t, Config{NodeID: "n1"}.withDefaults(), want,
		want.withDefaults().validate(), Config{NodeID: "n1"}.Validate(), "Now")
}

func TestWithDefaultsKeepsSetFields(t *testing.T) {
	c := Config{NodeID: "n1", HopLimit: 2, MaxEnvelopeBytes: 100, AckWithhold: time.Minute}.withDefaults()
	if c.HopLimit != 2 || c.AckWithhold != time.Minute {
		t.Errorf("set fields changed: %+v", c)
	}
	if c.MaxEnvelopeBytes != minEnvelopeBytes {
		t.Errorf("MaxEnvelopeBytes %d, want raised to %d", c.MaxEnvelopeBytes, minEnvelopeBytes)
	}
	if c.Cluster != "pushring" || c.AttachTTL != 30*time.Second || c.AckTimeout != 5*time.Second {
		t.Errorf("zero fields not filled: %+v", c)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		field string
		mod   func(*Config)
	}{
		{"NodeID", func(c *Config) { c.NodeID = "" }},
		{"NodeID", func(c *Config) { c.NodeID = "a.b" }},
		{"NodeID", func(c *Config) { c.NodeID = strings.Repeat("n", maxNodeIDLen+1) }},
		{"Cluster", func(c *Config) { c.Cluster = "a b" }},
		{"Cluster", func(c *Config) { c.Cluster = ">" }},
		{"HopLimit", func(c *Config) { c.HopLimit = -1 }},
		{"HopLimit", func(c *Config) { c.HopLimit = 256 }},
		{"MaxEnvelopeBytes", func(c *Config) { c.MaxEnvelopeBytes = -1 }},
		{"AttachTTL", func(c *Config) { c.AttachTTL = -time.Second }},
		{"AttachRenew", func(c *Config) { c.AttachRenew = -time.Second }},
		{"AckTimeout", func(c *Config) { c.AckTimeout = -time.Second }},
		{"AckWithhold", func(c *Config) { c.AckWithhold = -time.Second }},
	} {
		cfg := DefaultConfig()
		cfg.NodeID = "n1"
		tc.mod(&cfg)
		err := cfg.withDefaults().validate()
		if err := testutil.ConfigError(err, ErrInvalidConfig, "fanout: ", tc.field); err != nil {
			t.Error(err)
			continue
		}
		if f, err := New(cfg, NewMemoryBus(), staticMembers{}, &mapPlacement{}, newRecorder()); !errors.Is(err, ErrInvalidConfig) || f != nil {
			t.Errorf("%s: New returned %v, %v", tc.field, f, err)
		}
	}
}

func TestNewRefusesMissingDependencies(t *testing.T) {
	cfg := Config{NodeID: "n1"}
	bus, members, place, d := NewMemoryBus(), staticMembers{}, &mapPlacement{}, newRecorder()
	for name, call := range map[string]func() (*Fanout, error){
		"bus":     func() (*Fanout, error) { return New(cfg, nil, members, place, d) },
		"members": func() (*Fanout, error) { return New(cfg, bus, nil, place, d) },
		"place":   func() (*Fanout, error) { return New(cfg, bus, members, nil, d) },
		"d":       func() (*Fanout, error) { return New(cfg, bus, members, place, nil) },
	} {
		if f, err := call(); !errors.Is(err, ErrInvalidConfig) || f != nil {
			t.Errorf("nil %s: %v, %v", name, f, err)
		}
	}
}
