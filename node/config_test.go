package node

import (
	"context"
	"errors"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pushring/pushring/api"
	"github.com/pushring/pushring/fanout"
	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/membership"
	"github.com/pushring/pushring/router"
	"github.com/pushring/pushring/store"
)

// Router, Membership and HTTP are left zero by withDefaults (their packages
// fill them, and test that their DefaultConfig is what they fill); every
// other field is the node's.
func TestDefaultConfigIsZeroWithDefaults(t *testing.T) {
	want := DefaultConfig()
	got := Config{NodeID: want.NodeID}.withDefaults()
	if !reflect.DeepEqual(got.Router, router.Config{}) || !reflect.DeepEqual(got.Membership, membership.Config{}) || got.HTTP != (api.HTTPConfig{}) {
		t.Errorf("withDefaults filled Router, Membership or HTTP: %+v %+v %+v", got.Router, got.Membership, got.HTTP)
	}
	testutil.CheckDefaults(t, got, want, want.withDefaults().validate(), Config{NodeID: "n1"}.Validate(), "Router", "Membership", "HTTP")
}

func TestWithDefaults(t *testing.T) {
	c := Config{NodeID: "n1", KVReplicas: 3, LoginRate: -1, Join: []string{"a:1"}}.withDefaults()
	if c.KVReplicas != 3 || c.LoginRate != -1 {
		t.Errorf("set fields changed: %+v", c)
	}
	if c.LoginBurst != 50 || c.SessionTTL != 24*time.Hour || c.Cluster != "pushring" {
		t.Errorf("zero fields not filled: %+v", c)
	}
	if c.Membership.JoinRetryInterval != time.Second {
		t.Errorf("with Join, JoinRetryInterval %v, want 1s", c.Membership.JoinRetryInterval)
	}
	if c := (Config{NodeID: "n1"}).withDefaults(); c.Membership.JoinRetryInterval != 0 {
		t.Errorf("without Join, JoinRetryInterval %v, want 0", c.Membership.JoinRetryInterval)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		field string
		mod   func(*Config)
		also  error // the component's sentinel the error matches as well
	}{
		{"NodeID", func(c *Config) { c.NodeID = "" }, nil},
		{"NodeID", func(c *Config) { c.NodeID = "a.b" }, nil},
		{"NodeID", func(c *Config) { c.NodeID = strings.Repeat("n", 65) }, membership.ErrInvalidConfig},
		{"Cluster", func(c *Config) { c.Cluster = "a b" }, fanout.ErrInvalidConfig},
		{"MQTTAddr", func(c *Config) { c.MQTTAddr = "nowhere" }, nil},
		{"ShutdownTimeout", func(c *Config) { c.ShutdownTimeout = -time.Second }, nil},
		{"HTTPAddr", func(c *Config) { c.HTTPAddr = "nowhere" }, nil},
		{"GossipAddr", func(c *Config) { c.GossipAddr = "nowhere" }, membership.ErrInvalidConfig},
		{"AdvertiseMQTT", func(c *Config) { c.AdvertiseMQTT = []string{""} }, nil},
		{"Replicas", func(c *Config) { c.KVReplicas = -1 }, store.ErrInvalidConfig},
		{"Replicas", func(c *Config) { c.KVReplicas = 6 }, store.ErrInvalidConfig},
		{"Cluster", func(c *Config) { c.Cluster = "a/b" }, store.ErrInvalidConfig},
		{"Cluster", func(c *Config) { c.Cluster = "\u00fcn\u00ef" }, store.ErrInvalidConfig},
		{"NATSListen", func(c *Config) { c.NATSListen = "nonsense" }, nil},
		{"Join", func(c *Config) { c.Join = []string{""} }, membership.ErrInvalidConfig},
		{"SessionTTL", func(c *Config) { c.SessionTTL = -time.Hour }, api.ErrInvalidConfig},
		{"LoginRate", func(c *Config) { c.LoginRate = math.NaN() }, api.ErrInvalidConfig},
		{"LoginBurst", func(c *Config) { c.LoginBurst = -1 }, api.ErrInvalidConfig},
		{"LoginAccountMaxBackoff", func(c *Config) { c.LoginAccountMaxBackoff = -time.Second }, api.ErrInvalidConfig},
		{"HTTP.ReadTimeout", func(c *Config) { c.HTTP.ReadTimeout = -time.Second }, api.ErrInvalidConfig},
		{"HTTP.MaxHeaderBytes", func(c *Config) { c.HTTP.MaxHeaderBytes = -1 }, api.ErrInvalidConfig},
		{"ProbeTimeout", func(c *Config) { c.Membership.ProbeTimeout = time.Hour }, membership.ErrInvalidConfig},
		{"MaxConnections", func(c *Config) { c.Router.MaxConnections = -1 }, router.ErrInvalidConfig},
		{"MaxQueued", func(c *Config) { c.Router.MaxQueued = -1 }, router.ErrInvalidConfig},
		{"PrivatePrefix", func(c *Config) { c.Router.PrivatePrefix = "/p/#" }, router.ErrInvalidConfig},
		{"NATSCert and NATSKey", func(c *Config) { c.NATSURL, c.NATSCert = "nats://h:1", "c.pem" }, nil},
		{"NATSCA", func(c *Config) { c.NATSCA = "ca.pem" }, nil},
		{"NATSCredsFile", func(c *Config) { c.NATSCredsFile = "x.creds" }, nil},
		{"NATSAuthorizedKeysFile", func(c *Config) { c.NATSURL, c.NATSAuthorizedKeysFile = "nats://h:1", "keys" }, nil},
		{"NATSTLSCert and NATSTLSKey", func(c *Config) { c.NATSListen, c.NATSTLSKey = "127.0.0.1:0", "k.pem" }, nil},
		{"NATSTLSClientCA", func(c *Config) { c.NATSListen, c.NATSTLSClientCA = "127.0.0.1:0", "ca.pem" }, nil},
		{"NATSTLSCert needs NATSListen", func(c *Config) { c.NATSTLSCert, c.NATSTLSKey = "c.pem", "k.pem" }, nil},
	} {
		cfg := DefaultConfig()
		tc.mod(&cfg)
		err := cfg.withDefaults().validate()
		if err := testutil.ConfigError(err, ErrInvalidConfig, "", tc.field); err != nil {
			t.Error(err)
			continue
		}
		if tc.also != nil && !errors.Is(err, tc.also) {
			t.Errorf("%s: %v, want it to match %v too", tc.field, err, tc.also)
		}
	}
}

// A bad config is refused before anything starts: no data dir, no NATS.
func TestStartRefusesInvalidConfigFirst(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.Router.MaxQueued = -1
	n, err := Start(context.Background(), cfg)
	if !errors.Is(err, ErrInvalidConfig) || !errors.Is(err, router.ErrInvalidConfig) || n != nil {
		t.Fatalf("Start: %v, %v", n, err)
	}
	if want := "router: MaxQueued must be > 0 (got -1)"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data dir after a refused config: %v", err)
	}
}

// A session's backlog age bound never exceeds what the journal keeps:
// the router gets the lower of the two, the default included.
func TestRouterBacklogAgeWithinJournal(t *testing.T) {
	for _, tc := range []struct {
		backlog, journal, want time.Duration
	}{
		{0, 0, 24 * time.Hour},
		{0, time.Hour, time.Hour},
		{2 * time.Hour, time.Hour, time.Hour},
		{30 * time.Minute, time.Hour, 30 * time.Minute},
		{30 * 24 * time.Hour, 0, 7 * 24 * time.Hour},
	} {
		c := Config{NodeID: "n1"}
		c.Router.SessionBacklogAge, c.Journal.MaxAge = tc.backlog, tc.journal
		if got := c.withDefaults().routerConfig().SessionBacklogAge; got != tc.want {
			t.Errorf("backlog %v, journal %v: router gets %v, want %v", tc.backlog, tc.journal, got, tc.want)
		}
	}
	c := DefaultConfig()
	c.Router.SessionBacklogAge = -time.Second
	if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "SessionBacklogAge") {
		t.Errorf("negative age bound: %v", err)
	}
}

// The node hands its trusted proxies to the API.
func TestTrustedProxiesReachTheAPI(t *testing.T) {
	p := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	if got := (Config{TrustedProxies: p}).apiConfig().TrustedProxies; !slices.Equal(got, p) {
		t.Fatalf("api TrustedProxies %v, want %v", got, p)
	}
}

// The node hands its trusted proxies to the MQTT listeners too, unless
// the router names its own; PROXY protocol without any is refused.
func TestTrustedProxiesReachTheRouter(t *testing.T) {
	p := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	if got := (Config{TrustedProxies: p}).routerConfig().TrustedProxies; !slices.Equal(got, p) {
		t.Fatalf("router TrustedProxies %v, want %v", got, p)
	}
	own := []netip.Prefix{netip.MustParsePrefix("192.168.0.0/16")}
	c := Config{TrustedProxies: p}
	c.Router.TrustedProxies = own
	if got := c.routerConfig().TrustedProxies; !slices.Equal(got, own) {
		t.Fatalf("router TrustedProxies %v, want its own %v", got, own)
	}
	c = DefaultConfig()
	c.Router.ProxyProtocol = true
	if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "ProxyProtocol") {
		t.Errorf("PROXY protocol without trusted proxies: %v", err)
	}
}
