package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/pushring/pushring/fanout"
	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/router"
)

// The whole path through real routers and fan-outs on an in-memory bus
// and a fixed placement: the router's Presence hook drives the attach
// records, and a client connected away from its home gets direct and group
// messages exactly once over MQTT.

type allowAll struct{}

func (allowAll) Authenticate(_ context.Context, user string, _ []byte) (router.Identity, error) {
	return router.Identity{ID: user}, nil
}
func (allowAll) AuthenticateToken(context.Context, []byte) (router.Identity, error) {
	return router.Identity{}, router.ErrBadCredentials
}
func (allowAll) AuthenticateCert(context.Context, string) (router.Identity, error) {
	return router.Identity{}, router.ErrNotAuthorized
}
func (allowAll) CanPublishGroup(string, string) bool { return true }
func (allowAll) IsMember(string, string) bool        { return true }
func (allowAll) CanDirect(string, string) bool       { return true }

type delivererFunc func(*message.Message, []string)

func (d delivererFunc) Deliver(m *message.Message, to []string) { d(m, to) }

// fixedPlacement homes principals and owns groups by map, def otherwise.
type fixedPlacement struct {
	homes, owners map[string]string
	def           string
}

func (p *fixedPlacement) Home(id string) string   { return cmp.Or(p.homes[id], p.def) }
func (p *fixedPlacement) Owner(gid string) string { return cmp.Or(p.owners[gid], p.def) }

// staticMembers is a fanout.Members over a map.
type staticMembers map[string][]string

func (m staticMembers) Members(gid string) []string { return m[gid] }

type routerNode struct {
	f    *fanout.Fanout
	srv  *router.Server
	addr string
}

func startRouterNodes(t *testing.T, bus fanout.Bus, dir fanout.Members, place fanout.Placement) []*routerNode {
	t.Helper()
	ids := []string{"n1", "n2", "n3"}
	out := make([]*routerNode, len(ids))
	for i, id := range ids {
		n := &routerNode{}
		cfg := fanout.DefaultConfig()
		cfg.NodeID, cfg.Cluster = id, "test"
		f, err := fanout.New(cfg, bus, dir, place, delivererFunc(func(m *message.Message, to []string) { n.srv.Deliver(m, to) }))
		if err != nil {
			t.Fatal(err)
		}
		n.f = f
		rcfg := router.DefaultConfig()
		rcfg.NodeID = id
		srv, err := router.New(rcfg, allowAll{}, allowAll{}, n.f, message.NewIDSource(id))
		if err != nil {
			t.Fatal(err)
		}
		n.srv = srv
		n.srv.SetPresence(n.f)
		if err := n.f.Start(); err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		n.addr = ln.Addr().String()
		done := make(chan error, 1)
		go func() { done <- n.srv.Serve(ln) }()
		t.Cleanup(func() {
			n.srv.Close() // router first: its Left calls queue Detaches
			n.f.Close()   // which Close still sends
			if err := <-done; !errors.Is(err, router.ErrServerClosed) {
				t.Errorf("Serve: %v", err)
			}
		})
		out[i] = n
	}
	return out
}

type mqttInbox struct {
	mu   sync.Mutex
	msgs []string
}

func (b *mqttInbox) add(_ mqtt.Client, m mqtt.Message) {
	b.mu.Lock()
	b.msgs = append(b.msgs, m.Topic()+" "+string(m.Payload()))
	b.mu.Unlock()
}

func (b *mqttInbox) get() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.msgs...)
}

func connectMQTT(t *testing.T, addr, id string, inbox *mqttInbox) mqtt.Client {
	t.Helper()
	o := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id + "-c").SetCleanSession(true).
		SetUsername(id).SetPassword("x").SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	if inbox != nil {
		if tok := c.Subscribe("/private/"+id+"/#", 1, inbox.add); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe %s: %v", id, tok.Error())
		}
	}
	return c
}

func TestAttachThroughRouters(t *testing.T) {
	bus := fanout.NewMemoryBus()
	place := &fixedPlacement{homes: map[string]string{"alice": "n1", "bob": "n2", "dev": "n3"},
		owners: map[string]string{"g": "n3"}, def: "n1"}
	nodes := startRouterNodes(t, bus, staticMembers{"g": {"alice", "bob"}}, place)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]

	// alice connects to n2, not her home: n2 attaches her at n1.
	var inbox mqttInbox
	alice := connectMQTT(t, n2.addr, "alice", &inbox)
	// Only alice is away from home, so n1's one record is hers.
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if r := n1.f.Stats().AttachRecords; r != 1 {
			return fmt.Errorf("%d attach records at n1", r)
		}
		return nil
	})

	// A device on n3 publishes to the group; bob on n2 (home) sends alice a
	// direct message.
	dev := connectMQTT(t, n3.addr, "dev", nil)
	if tok := dev.Publish("/group/g", 1, false, "to the group"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	bob := connectMQTT(t, n2.addr, "bob", nil)
	if tok := bob.Publish("/private/alice", 1, false, "hi alice"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	want := map[string]bool{"/private/alice/group/g to the group": true, "/private/alice hi alice": true}
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if got := inbox.get(); len(got) < len(want) {
			return fmt.Errorf("alice got %v", got)
		}
		return nil
	})
	// A duplicate would have been sent with the first copies; a last
	// direct message on the same path (home n1, on to n2) is a barrier
	// for them.
	if tok := bob.Publish("/private/alice", 1, false, "last"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	want["/private/alice last"] = true
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if got := inbox.get(); !slices.Contains(got, "/private/alice last") {
			return fmt.Errorf("alice got %v", got)
		}
		return nil
	})
	got := inbox.get()
	if len(got) != len(want) {
		t.Fatalf("alice got %v, want each of %v once", got, want)
	}
	for _, m := range got {
		if !want[m] {
			t.Errorf("alice got %q", m)
		}
	}
	if s := n1.f.Stats(); s.AttachForwards != 3 {
		t.Errorf("n1 attach forwards %d, want 3", s.AttachForwards)
	}

	// alice leaves: her record at n1 goes.
	alice.Disconnect(0)
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if r := n1.f.Stats().AttachRecords; r != 0 {
			return fmt.Errorf("%d attach records at n1", r)
		}
		return nil
	})
}
