package natsembed

import (
	"github.com/nats-io/nats.go"
	"testing"
	"time"
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

func TestListenRequiresToken(t *testing.T) {
	if _, err := Start(Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"}); err == nil {
		t.Fatal("listening server started without a token")
	}
	s, err := Start(Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0", Token: "s3cret-token"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	addr := s.Addr().String()
	if nc, err := nats.Connect("nats://" + addr); err == nil {
		nc.Close()
		t.Fatal("connected without the token")
	}
	nc, err := nats.Connect("nats://s3cret-token@" + addr)
	if err != nil {
		t.Fatalf("with the token: %v", err)
	}
	nc.Close()
	inproc, err := s.Connect()
	if err != nil {
		t.Fatalf("in-process with the token: %v", err)
	}
	inproc.Close()
}
