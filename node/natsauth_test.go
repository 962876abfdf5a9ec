package node

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushring/pushring/internal/natsauth"
	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/store"
)

// permConn opens a NATS connection with the options given (a node's key)
// and returns the channel of its asynchronous errors, where the
// server's permissions violations arrive.
func permConn(t *testing.T, connect func(...nats.Option) (*nats.Conn, error), opts ...nats.Option) (*nats.Conn, chan error) {
	t.Helper()
	errs := make(chan error, 64)
	opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	nc, err := connect(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, errs
}

// refusal is one thing a node's credentials must not be allowed to do.
type refusal struct {
	sub     bool // subscribe (else publish)
	subject string
}

func (r refusal) String() string {
	if r.sub {
		return "subscribe " + r.subject
	}
	return "publish " + r.subject
}

// refusals: outside pushring's subjects, another cluster's, another
// node's inbox and fanout subject, the system account, raw reads of the
// KV streams and the JetStream calls a node never makes (delete, purge).
var refusals = []refusal{
	{true, "other.>"}, {false, "other.x"},
	{true, ">"},
	{true, "pushring.othercluster.node.n1"}, {false, "pushring.othercluster.node.n1"},
	{true, "$KV.othercluster_sessions.>"}, {false, "$KV.othercluster_sessions.k"},
	{false, "$JS.API.STREAM.INFO.KV_othercluster_sessions"},
	{false, "$JS.API.CONSUMER.CREATE.KV_othercluster_sessions"},
	{true, "_INBOX_pushring.n2.>"}, {true, "_INBOX.>"}, {false, "_INBOX_pushring.n2.forged"},
	{true, "pushring.pushring.node.n2"}, {true, "pushring.pushring.node.*"},
	{true, "$SYS.>"}, {false, "$SYS.REQ.SERVER.PING"},
	{true, "$KV.pushring_sessions.>"},
	{false, "$JS.API.STREAM.DELETE.KV_pushring_sessions"},
	{false, "$JS.API.STREAM.PURGE.KV_pushring_sessions"},
	{false, "$JS.API.STREAM.CREATE.other"},
	{false, "$JS.API.STREAM.LIST"},
}

// expectRefused does r on nc and waits for the server's permissions
// violation naming r's subject.
func expectRefused(t *testing.T, nc *nats.Conn, errs chan error, r refusal) {
	t.Helper()
	var err error
	if r.sub {
		_, err = nc.SubscribeSync(r.subject)
	} else {
		err = nc.Publish(r.subject, []byte("x"))
	}
	if err != nil {
		t.Fatalf("%v: client error %v", r, err)
	}
	nc.Flush()
	select {
	case err := <-errs:
		if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), `"`+r.subject+`"`) {
			t.Fatalf("%v: got %v, want its permissions violation", r, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%v: allowed (no permissions violation within 5 s)", r)
	}
	if !nc.IsConnected() {
		t.Fatalf("%v: connection lost", r)
	}
}

// TestNATSNodePermissions: the node's own key, on its in-process
// connection and over TCP, is refused every subject outside its
// permissions (each refusal a permissions violation, the connection kept)
// while the node's real traffic through the same permissions works: HTTP
// user and group setup and logins (KV create, get, watch), group and
// direct delivery over MQTT (fanout publish and subscribe), and a KV
// read and a publish to another node's subject with the key by hand.
func TestNATSNodePermissions(t *testing.T) {
	dir := t.TempDir()
	logs := &syncBuffer{}
	n := startNode(t, dir, func(c *Config) {
		c.NATSListen = "127.0.0.1:0"
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	defer n.Close()

	w := setupWorld(t, n)
	sinks := map[string]*received{"alice": {}, "bob": {}}
	for _, u := range []string{"alice", "bob"} {
		s := w.api.login(u, passwordOf(u))
		c := connect(t, n, clientOpts{user: u, password: s.Token}, sinks[u])
		if code := subscribe(t, c, "/private/"+u+"/#", 1, sinks[u]); code != 1 {
			t.Fatalf("%s: granted %#x", u, code)
		}
	}
	d1 := connect(t, n, clientOpts{user: "d1", password: w.d1Key}, nil)
	publish(t, d1, "/group/g1", 1, "group-hi")
	w.api.must(202, "POST", "/v1/users/bob/messages", w.admin, map[string]any{"payload": "direct-hi"}, nil)
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		a, b := sinks["alice"].list(), sinks["bob"].list()
		if !slices.Contains(a, "/private/alice/group/g1 group-hi") || !slices.Contains(b, "/private/bob/group/g1 group-hi") ||
			!slices.Contains(b, "/private/bob direct-hi") {
			return fmt.Errorf("alice %v, bob %v", a, b)
		}
		return nil
	})

	_, auth := nodeKey(t, dir)
	inbox := nats.CustomInboxPrefix(natsauth.InboxPrefix("pushring", "n1"))
	url := "nats://" + n.embedded.Addr().String()
	for name, connect := range map[string]func(...nats.Option) (*nats.Conn, error){
		"in-process": n.embedded.Connect,
		"tcp":        func(o ...nats.Option) (*nats.Conn, error) { return nats.Connect(url, o...) },
	} {
		t.Run(name, func(t *testing.T) {
			nc, errs := permConn(t, connect, auth, inbox)
			for _, r := range refusals {
				expectRefused(t, nc, errs, r)
			}
			// What a node does is allowed: read a bucket, publish to a
			// peer's subject, subscribe to its own subject and inbox.
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			// (The mqtt bucket: a node looks up no other by name.)
			kv, err := js.KeyValue(ctx, "pushring_mqtt")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := kv.Get(ctx, "s.nobody.bx"); !errors.Is(err, jetstream.ErrKeyNotFound) {
				t.Fatalf("get a missing record: %v", err)
			}
			if err := nc.Publish("pushring.pushring.node.n2", []byte("x")); err != nil {
				t.Fatal(err)
			}
			if _, err := nc.SubscribeSync(natsauth.InboxPrefix("pushring", "n1") + ".mine"); err != nil {
				t.Fatal(err)
			}
			// A refusal after them is the first error: they raised none.
			expectRefused(t, nc, errs, refusal{true, "other.last"})
		})
	}
	// Each refusal counted, the flood logged once.
	if got, want := counter(t, n, "pushring_nats_refusals_total", map[string]string{"reason": "permission"}), float64(2*(len(refusals)+1)); got != want {
		t.Errorf("pushring_nats_refusals_total{reason=permission} %v, want %v", got, want)
	}
	if got := strings.Count(logs.String(), "refused a client"); got != 1 {
		t.Errorf("%d log lines of refusals, want 1:\n%s", got, logs.String())
	}
}

// writeKeys writes an authorized-keys file listing keys.
func writeKeys(t *testing.T, path string, keys ...natsauth.Key) {
	t.Helper()
	var b strings.Builder
	b.WriteString("# nodes allowed on n1's NATS\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s %s\n", k.NodeID, k.PublicKey)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestNATSRevokeNode: three nodes on n1's embedded NATS, n2 and n3 by
// their keys in n1's authorized-keys file. Removing n3's key and
// reloading closes n3's connection at once and refuses its key from then
// on; n1 and n2 keep their connections (no reconnect) and keep
// delivering group and direct messages between users homed on them.
func TestNATSRevokeNode(t *testing.T) {
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	var keys []natsauth.Key
	for i, d := range dirs[1:] {
		pub, _ := nodeKey(t, d)
		keys = append(keys, natsauth.Key{NodeID: fmt.Sprint("n", i+2), PublicKey: pub})
	}
	authorized := filepath.Join(dirs[0], "authorized_keys")
	writeKeys(t, authorized, keys...)
	tc := &testCluster{}
	n1 := startNode(t, dirs[0], func(c *Config) {
		c.NATSListen = "127.0.0.1:0"
		c.NATSAuthorizedKeysFile = authorized
		c.AdminKey = "cluster-admin-key"
	})
	t.Cleanup(func() { n1.Close() })
	tc.nodes = append(tc.nodes, n1)
	url := "nats://" + n1.embedded.Addr().String()
	for i, d := range dirs[1:] {
		n := startNode(t, d, func(c *Config) {
			c.NodeID = fmt.Sprint("n", i+2)
			c.NATSURL = url
			c.AdminKey = "cluster-admin-key"
			c.Join = []string{n1.cluster.GossipAddr()}
		})
		t.Cleanup(func() { n.Close() })
		tc.nodes = append(tc.nodes, n)
	}
	tc.waitConverged(t)
	n2, n3 := tc.nodes[1], tc.nodes[2]

	// Users homed on n1 and n2, a group owned by one of them, a device
	// that publishes to it through n2's API.
	ctx := context.Background()
	var users []string
	homes := map[string]bool{}
	for i := 0; len(users) < 4 && i < 200; i++ {
		id := fmt.Sprint("u", i)
		if h := n1.cluster.Home(id); h != "n3" && (len(users) < 2 || !homes[h] || len(homes) == 2) {
			users, homes[h] = append(users, id), true
		}
	}
	gid := ""
	for i := 0; gid == "" && i < 200; i++ {
		if g := fmt.Sprint("g", i); n1.cluster.Owner(g) != "n3" {
			gid = g
		}
	}
	if len(homes) != 2 || gid == "" {
		t.Fatalf("homes %v, group %q: want users on n1 and n2 and a group owned by one", homes, gid)
	}
	if err := n1.dir.CreateGroup(ctx, store.Group{ID: gid}); err != nil {
		t.Fatal(err)
	}
	boxes := map[string]*inbox{}
	for _, id := range users {
		token := tc.user(t, id)
		if err := n1.dir.SetRole(ctx, gid, id, store.Member, true); err != nil {
			t.Fatal(err)
		}
		boxes[id] = &inbox{}
		listen(t, tc.byID(n1.cluster.Home(id)).MQTTAddr(), id, token, boxes[id])
	}
	dev := "dev"
	devKey := tc.device(t, dev)
	if err := n1.dir.SetRole(ctx, gid, dev, store.Publisher, true); err != nil {
		t.Fatal(err)
	}
	// Every node's directory (a watch-fed cache) has the roles.
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		for _, n := range tc.nodes {
			if len(n.dir.Members(gid)) != len(users) || !n.dir.CanPublishGroup(dev, gid) {
				return fmt.Errorf("%s: members %v, publisher %v", n.cfg.NodeID, n.dir.Members(gid), n.dir.CanPublishGroup(dev, gid))
			}
		}
		return nil
	})
	api2 := newAPI(t, n2)
	deliver := func(payload string) {
		t.Helper()
		api2.must(202, "POST", "/v1/groups/"+gid+"/messages", basic(dev, devKey), map[string]any{"payload": payload}, nil)
		for _, id := range users {
			api2.must(202, "POST", "/v1/users/"+id+"/messages", "Bearer cluster-admin-key", map[string]any{"payload": payload + "-direct"}, nil)
		}
		testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			for _, id := range users {
				got := boxes[id].list()
				if !slices.Contains(got, "/private/"+id+"/group/"+gid+" "+payload) || !slices.Contains(got, "/private/"+id+" "+payload+"-direct") {
					return fmt.Errorf("%s (home %s) got %v", id, n1.cluster.Home(id), got)
				}
			}
			return nil
		})
	}
	deliver("before")
	reconnects := []uint64{n1.nc.Stats().Reconnects, n2.nc.Stats().Reconnects}

	writeKeys(t, authorized, keys[0])
	start := time.Now()
	if err := n1.Reload(); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
		if n3.nc.IsConnected() {
			return errors.New("n3 still connected to NATS")
		}
		return nil
	})
	t.Logf("n3's NATS connection lost %v after the reload began", time.Since(start))
	_, n3auth := nodeKey(t, dirs[2])
	if nc, err := nats.Connect(url, n3auth); err == nil {
		nc.Close()
		t.Fatal("n3's revoked key connected")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("n3's revoked key: %v, want an authorization violation", err)
	}
	if got := counter(t, n1, "pushring_nats_refusals_total", map[string]string{"reason": "authentication"}); got < 1 {
		t.Errorf("pushring_nats_refusals_total{reason=authentication} %v after the revoked key tried, want >= 1", got)
	}
	if err := n3.ready(); err == nil {
		t.Error("n3 ready without NATS")
	}

	deliver("after")
	if got := []uint64{n1.nc.Stats().Reconnects, n2.nc.Stats().Reconnects}; !slices.Equal(got, reconnects) {
		t.Errorf("n1, n2 reconnects %v after the reload, want %v (their connections untouched)", got, reconnects)
	}
	if !n2.nc.IsConnected() || n2.ready() != nil {
		t.Errorf("n2 after the reload: connected %v, ready %v", n2.nc.IsConnected(), n2.ready())
	}

	// A file that does not parse changes nothing: n2 stays in.
	if err := os.WriteFile(authorized, []byte("n2 not-a-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n1.Reload(); err == nil {
		t.Error("Reload accepted a bad authorized-keys file")
	}
	deliver("after-bad-file")
}

// testPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, all PEM, into dir.
type testPKI struct {
	ca, serverCert, serverKey, clientCert, clientKey string
}

func newTestPKI(t *testing.T, dir string) testPKI {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	writeKey := func(name string, k *ecdsa.PrivateKey) string {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name, "PRIVATE KEY", der)
	}
	now := time.Now()
	caKey := key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pushring test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, name string, usage x509.ExtKeyUsage, ips []net.IP) ([]byte, *ecdsa.PrivateKey) {
		k := key()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	sDER, sKey := leaf(2, "127.0.0.1", x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	cDER, cKey := leaf(3, "n2", x509.ExtKeyUsageClientAuth, nil)
	return testPKI{
		ca:         write("ca.pem", "CERTIFICATE", caDER),
		serverCert: write("server.pem", "CERTIFICATE", sDER),
		serverKey:  writeKey("server-key.pem", sKey),
		clientCert: write("client.pem", "CERTIFICATE", cDER),
		clientKey:  writeKey("client-key.pem", cKey),
	}
}

// TestNATSTLS: the embedded server's listener serves TLS; a node that
// trusts its CA (--nats-ca) connects and its store works across the two
// nodes; a client without the CA is refused. With a client CA the server
// also requires a client certificate: a node without one cannot start,
// one with --nats-cert/--nats-key does.
func TestNATSTLS(t *testing.T) {
	pki := newTestPKI(t, t.TempDir())
	for _, requireCert := range []bool{false, true} {
		t.Run(fmt.Sprint("client-cert-required=", requireCert), func(t *testing.T) {
			d1, d2 := t.TempDir(), t.TempDir()
			pub2, auth2 := nodeKey(t, d2)
			authorized := filepath.Join(d1, "authorized_keys")
			writeKeys(t, authorized, natsauth.Key{NodeID: "n2", PublicKey: pub2})
			n1 := startNode(t, d1, func(c *Config) {
				c.NATSListen = "127.0.0.1:0"
				c.NATSAuthorizedKeysFile = authorized
				c.NATSTLSCert, c.NATSTLSKey = pki.serverCert, pki.serverKey
				if requireCert {
					c.NATSTLSClientCA = pki.ca
				}
			})
			defer n1.Close()
			url := "tls://" + n1.embedded.Addr().String()
			n2cfg := func(c *Config) {
				c.NodeID = "n2"
				c.NATSURL = url
				c.NATSCA = pki.ca
				if requireCert {
					c.NATSCert, c.NATSKey = pki.clientCert, pki.clientKey
				}
			}
			// Refused: no CA (the server's certificate is not trusted);
			// with client certificates required, a CA but no certificate.
			if nc, err := nats.Connect(url, auth2, nats.Timeout(2*time.Second)); err == nil {
				nc.Close()
				t.Fatal("connected without the CA")
			}
			if requireCert {
				if nc, err := nats.Connect(url, auth2, nats.RootCAs(pki.ca), nats.Timeout(2*time.Second)); err == nil {
					nc.Close()
					t.Fatal("connected without a client certificate")
				}
				if n, err := tryStartNode(t, d2, func(c *Config) { n2cfg(c); c.NATSCert, c.NATSKey = "", "" }); err == nil {
					n.Close()
					t.Fatal("a node without a client certificate started")
				}
			}
			testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
				if got := counter(t, n1, "pushring_nats_refusals_total", map[string]string{"reason": "tls"}); got < 1 {
					return fmt.Errorf("tls refusals %v", got)
				}
				return nil
			})
			n2 := startNode(t, d2, n2cfg)
			defer n2.Close()
			if !n2.nc.TLSRequired() {
				t.Error("n2's NATS connection is not TLS")
			}
			ctx := context.Background()
			if err := n2.dir.CreatePrincipal(ctx, store.Principal{ID: "over-tls", Kind: store.User, SecretHash: "x"}); err != nil {
				t.Fatal(err)
			}
			testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
				if _, err := n1.dir.Principal(ctx, "over-tls"); err != nil {
					return err
				}
				return nil
			})
			// A reload keeps the TLS listener and the connections on it.
			reconnects := n2.nc.Stats().Reconnects
			if err := n1.Reload(); err != nil {
				t.Fatalf("reload with TLS: %v", err)
			}
			if err := n2.nc.Flush(); err != nil || n2.nc.Stats().Reconnects != reconnects {
				t.Fatalf("n2 after n1's reload: %v, %d reconnects", err, n2.nc.Stats().Reconnects-reconnects)
			}
		})
	}
}

// TestNATSExternalServerConfig: a nats-server configured with the block
// pushctl nats-config prints (natsauth.Config) lets a node with that key
// run: it creates the buckets, logs in a user and delivers a direct
// message, within those permissions alone.
func TestNATSExternalServerConfig(t *testing.T) {
	dir := t.TempDir()
	pub, _ := nodeKey(t, dir)
	conf := filepath.Join(t.TempDir(), "nats.conf")
	text := fmt.Sprintf("listen: \"127.0.0.1:-1\"\njetstream { store_dir: %q }\nno_sys_acc: false\n%s",
		filepath.Join(t.TempDir(), "js"), natsauth.Config("pushring", []natsauth.Key{{NodeID: "n1", PublicKey: pub}}))
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	opts.NoSigs, opts.NoLog = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	defer func() { s.Shutdown(); s.WaitForShutdown() }()

	n := startNode(t, dir, func(c *Config) { c.NATSURL = s.ClientURL() })
	defer n.Close()
	checkDirectDelivery(t, n, "via-external")
}

// TestNATSURLSecretRedacted: a password or token in a NATS URL is
// reported, never printed.
func TestNATSURLSecretRedacted(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		secret   bool
	}{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222", false},
		{"nats://s3cr3t@h:1,nats://u:pw-s3cr3t@h:2", "nats://REDACTED@h:1,nats://REDACTED@h:2", true},
		{"nats://h:1,tls://tok-s3cr3t@h:2", "nats://h:1,tls://REDACTED@h:2", true},
		{"nats://u:s3cr3t@[::1", "<unparsable URL>", true},
	} {
		got, secret := urlSecrets(tc.in)
		if got != tc.want || secret != tc.secret || strings.Contains(got, "s3cr3t") {
			t.Errorf("%q: %q %v, want %q %v", tc.in, got, secret, tc.want, tc.secret)
		}
	}
}

// syncBuffer is a log sink safe for the node's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestNATSURLSecretWarns: against a NATS server without authorization, a
// token in --nats-url still connects, with a warning that names the
// problem and not the token; a node with no URL secret signs with its
// nkey, and when the server has no authorization refuses to start unless
// InsecureNATS, which it then warns of.
func TestNATSURLSecretWarns(t *testing.T) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	defer func() { s.Shutdown(); s.WaitForShutdown() }()
	addr := strings.TrimPrefix(s.ClientURL(), "nats://")
	if _, err := tryStartNode(t, t.TempDir(), func(c *Config) { c.NATSURL = "nats://" + addr }); err == nil ||
		!strings.Contains(err.Error(), "has no authorization") {
		t.Fatalf("a node started on a NATS server without authorization: %v", err)
	}
	for _, tc := range []struct {
		url, want string
	}{
		{"nats://tok-s3cr3t@" + addr, "secret on the command line"},
		{"nats://" + addr, "the NATS server has no authorization"},
	} {
		logs := &syncBuffer{}
		n := startNode(t, t.TempDir(), func(c *Config) {
			c.NATSURL = tc.url
			c.InsecureNATS = true
			c.Logger = slog.New(slog.NewTextHandler(logs, nil))
		})
		n.Close()
		if out := logs.String(); !strings.Contains(out, "level=WARN msg=\""+tc.want) || strings.Contains(out, "s3cr3t") {
			t.Errorf("%s: want a Warn %q and no secret in the logs:\n%s", tc.url, tc.want, out)
		}
	}
}

func TestLoopbackAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:4222": true, "127.0.0.5:1": true, "[::1]:4222": true, "localhost:4222": true,
		":4222": false, "0.0.0.0:4222": false, "10.0.0.1:4222": false, "nats.example:4222": false, "nonsense": false,
	} {
		if got := loopbackAddr(addr); got != want {
			t.Errorf("loopbackAddr(%q) = %v, want %v", addr, got, want)
		}
	}
}

// TestNATSCredsFile: against a NATS server in operator (JWT) mode, a node
// signs in with --nats-creds-file, a user JWT carrying
// natsauth.NodePermissions, and runs (buckets, login, delivery); the
// permissions in the JWT hold (a subject outside them is refused).
func TestNATSCredsFile(t *testing.T) {
	s, account := testutil.OperatorNATS(t, true)
	perms := natsauth.NodePermissions("pushring", "n1")
	ujwt, useed := testutil.UserJWT(t, account, perms.Publish, perms.Subscribe)
	creds, err := jwt.FormatUserConfig(ujwt, useed)
	if err != nil {
		t.Fatal(err)
	}
	credsFile := filepath.Join(t.TempDir(), "n1.creds")
	if err := os.WriteFile(credsFile, creds, 0o600); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	n := startNode(t, dir, func(c *Config) { c.NATSURL, c.NATSCredsFile = s.ClientURL(), credsFile })
	defer n.Close()
	if _, err := os.Stat(filepath.Join(dir, "nats.nk")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("nats.nk with a creds file: %v, want none made", err)
	}
	checkDirectDelivery(t, n, "via-jwt")
	nc, errs := permConn(t, func(o ...nats.Option) (*nats.Conn, error) { return nats.Connect(s.ClientURL(), o...) },
		nats.UserCredentials(credsFile))
	expectRefused(t, nc, errs, refusal{true, "other.>"})
}

// checkDirectDelivery sets up n's world and checks that a direct message
// with payload, sent over HTTP, reaches alice over MQTT: the node's NATS
// traffic (KV and fanout) works under its credentials.
func checkDirectDelivery(t *testing.T, n *Node, payload string) {
	t.Helper()
	w := setupWorld(t, n)
	sink := &received{}
	login := w.api.login("alice", passwordOf("alice"))
	c := connect(t, n, clientOpts{user: "alice", password: login.Token}, sink)
	subscribe(t, c, "/private/alice/#", 1, sink)
	w.api.must(202, "POST", "/v1/users/alice/messages", w.admin, map[string]any{"payload": payload}, nil)
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if !slices.Contains(sink.list(), "/private/alice "+payload) {
			return fmt.Errorf("alice got %v", sink.list())
		}
		return nil
	})
}
