package natsembed

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

func TestStartConnectPubSub(t *testing.T) {
	s, err := Start(Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	nc, err := s.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("x")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("x", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil || string(m.Data) != "hi" {
		t.Fatalf("got %v %v", m, err)
	}
	if _, err := nc.JetStream(); err != nil {
		t.Fatal(err)
	}
}

// userKey makes a user nkey and its nats.Option.
func userKey(t *testing.T) (string, nats.Option) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return pub, nats.Nkey(pub, kp.Sign)
}

// TestListenRequiresNkey: a listening server refuses to start without
// users, and refuses clients without a listed key, over TCP and
// with the key in-process too.
func TestListenRequiresNkey(t *testing.T) {
	if _, err := Start(Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"}); err == nil {
		t.Fatal("listening server started without users")
	}
	pub, auth := userKey(t)
	_, stranger := userKey(t)
	s, err := Start(Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0", Users: []User{{PublicKey: pub}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	url := "nats://" + s.Addr().String()
	for name, opts := range map[string][]nats.Option{"no credentials": nil, "unlisted key": {stranger}, "token": {nats.Token("x")}} {
		if nc, err := nats.Connect(url, opts...); err == nil {
			nc.Close()
			t.Fatalf("%s: connected", name)
		}
	}
	// (An in-process client with a wrong key is refused too, but the
	// server then waits out its 10 s write deadline on the pipe; the
	// node's tests show the in-process connection holds its key's
	// permissions.)
	nc, err := nats.Connect(url, auth)
	if err != nil {
		t.Fatalf("with the key: %v", err)
	}
	nc.Close()
	inproc, err := s.Connect(auth)
	if err != nil {
		t.Fatalf("in-process with the key: %v", err)
	}
	inproc.Close()
}

// TestSetUsersRevokes: a key dropped by SetUsers loses its live
// connection and cannot reconnect; a key kept stays connected with its
// permissions, and a permission added at reload applies to its next
// connection.
func TestSetUsersRevokes(t *testing.T) {
	keep, keepAuth := userKey(t)
	drop, dropAuth := userKey(t)
	limited := &Permissions{Publish: []string{"a"}, Subscribe: []string{"a"}}
	s, err := Start(Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0",
		Users: []User{{PublicKey: keep, Permissions: limited}, {PublicKey: drop}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	url := "nats://" + s.Addr().String()
	lost := make(chan struct{}, 1)
	dropped, err := nats.Connect(url, dropAuth, nats.DisconnectErrHandler(func(*nats.Conn, error) { lost <- struct{}{} }))
	if err != nil {
		t.Fatal(err)
	}
	defer dropped.Close()
	errs := make(chan error, 10)
	kept, err := nats.Connect(url, keepAuth, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	if err := s.SetUsers([]User{{PublicKey: keep, Permissions: &Permissions{Publish: []string{"a", "b"}, Subscribe: []string{"a", "b"}}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Fatalf("revoked connection still up: %v", dropped.Status())
	}
	if nc, err := nats.Connect(url, dropAuth); err == nil {
		nc.Close()
		t.Fatal("revoked key reconnected")
	}
	sub, err := kept.SubscribeSync("a")
	if err != nil {
		t.Fatal(err)
	}
	if err := kept.Publish("a", []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.NextMsg(5 * time.Second); err != nil || string(m.Data) != "still here" {
		t.Fatalf("kept connection after reload: %v %v", m, err)
	}
	select {
	case err := <-errs:
		t.Fatalf("kept connection: %v", err)
	default:
	}
	again, err := nats.Connect(url, keepAuth)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	subB, err := again.SubscribeSync("b")
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Publish("b", []byte("new permission")); err != nil {
		t.Fatal(err)
	}
	if m, err := subB.NextMsg(5 * time.Second); err != nil || string(m.Data) != "new permission" {
		t.Fatalf("a permission added at reload, on a new connection: %v %v", m, err)
	}
	if err := s.SetUsers(nil); err == nil {
		t.Fatal("a listening server accepted an empty user list")
	}
}
