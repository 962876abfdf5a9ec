package membership

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
)

func TestDefaultConfigIsZeroWithDefaults(t *testing.T) {
	want := DefaultConfig()
	want.NodeID = "n1"
	testutil.CheckDefaults(t, Config{NodeID: "n1"}.withDefaults(), want,
		want.withDefaults().validate(), Config{NodeID: "n1"}.Validate())
}

func TestWithDefaultsKeepsSetFields(t *testing.T) {
	c := Config{NodeID: "n1", ProbeInterval: time.Second, SuspicionMult: 6}.withDefaults()
	if c.ProbeInterval != time.Second || c.SuspicionMult != 6 {
		t.Errorf("set fields changed: %+v", c)
	}
	if c.ProbeTimeout != 100*time.Millisecond || c.GossipAddr != "127.0.0.1:7946" || c.JoinRetryInterval != 0 {
		t.Errorf("zero fields not as documented: %+v", c)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		field string
		mod   func(*Config)
	}{
		{"NodeID", func(c *Config) { c.NodeID = "" }},
		{"NodeID", func(c *Config) { c.NodeID = "a b" }},
		{"NodeID", func(c *Config) { c.NodeID = "a.b" }},
		{"NodeID", func(c *Config) { c.NodeID = strings.Repeat("n", metaMaxID+1) }},
		{"GossipAddr", func(c *Config) { c.GossipAddr = "nowhere" }},
		{"GossipAddr", func(c *Config) { c.GossipAddr = "host:99999" }},
		{"AdvertiseAddr", func(c *Config) { c.AdvertiseAddr = "host" }},
		{"Join", func(c *Config) { c.Join = []string{"a:1", ""} }},
		{"JoinRetryInterval", func(c *Config) { c.JoinRetryInterval = -time.Second }},
		{"Label", func(c *Config) { c.Label = strings.Repeat("l", 256) }},
		{"Keys", func(c *Config) { c.Keys = [][]byte{[]byte("short")} }},
		{"VirtualNodes", func(c *Config) { c.VirtualNodes = -1 }},
		{"VirtualNodes", func(c *Config) { c.VirtualNodes = maxVirtualNodes + 1 }},
		{"ProbeInterval", func(c *Config) { c.ProbeInterval = -time.Second }},
		{"ProbeTimeout", func(c *Config) { c.ProbeTimeout = -time.Second }},
		{"ProbeTimeout", func(c *Config) { c.ProbeTimeout = c.ProbeInterval }},
		{"SuspicionMult", func(c *Config) { c.SuspicionMult = -1 }},
		{"GossipInterval", func(c *Config) { c.GossipInterval = -time.Second }},
		{"PushPullInterval", func(c *Config) { c.PushPullInterval = -time.Second }},
		{"MQTT", func(c *Config) { c.MQTT = slices.Repeat([]string{strings.Repeat("m", 200)}, 3) }},
		{"MQTT", func(c *Config) { c.MQTT = make([]string, metaMaxMQTT+1) }},
		{"HTTP", func(c *Config) { c.HTTP = strings.Repeat("h", metaMaxString+1) }},
	} {
		cfg := DefaultConfig()
		cfg.NodeID = "n1"
		tc.mod(&cfg)
		err := cfg.withDefaults().validate()
		if err := testutil.ConfigError(err, ErrInvalidConfig, "membership: ", tc.field); err != nil {
			t.Error(err)
			continue
		}
		if c, err := Start(cfg); !errors.Is(err, ErrInvalidConfig) || c != nil {
			if c != nil {
				c.Close()
			}
			t.Errorf("%s: Start returned %v, %v", tc.field, c, err)
		}
	}
}
