package store

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/pushring/pushring/internal/natsembed"
	"github.com/pushring/pushring/internal/testutil"
)

// startNATSCluster starts three embedded NATS servers routed to each
// other (JetStream clustered), stopped at cleanup.
// The servers listen (routes form only then), so they need a user: the
// returned option signs in as it, with every permission.
func startNATSCluster(t *testing.T) ([]*natsembed.Server, nats.Option) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	routes := make([]string, 3)
	for i := range routes {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		routes[i] = l.Addr().String()
		l.Close()
	}
	servers := make([]*natsembed.Server, 3)
	errs := make(chan error, 3)
	for i := range servers {
		dir := t.TempDir()
		go func() { // the servers wait for each other's routes
			s, err := natsembed.Start(natsembed.Config{
				StoreDir: dir, ServerName: fmt.Sprint("s", i), Listen: "127.0.0.1:0",
				Users:       []natsembed.User{{PublicKey: pub}},
				ClusterName: "store-test", ClusterListen: routes[i], Routes: routes,
			})
			servers[i] = s
			errs <- err
		}()
	}
	var failed error
	for range servers {
		if err := <-errs; err != nil {
			failed = err
		}
	}
	for _, s := range servers {
		if s != nil {
			t.Cleanup(s.Stop)
		}
	}
	if failed != nil {
		t.Fatal(failed)
	}
	testutil.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		leader := false
		for _, s := range servers {
			leader = leader || s.JetStreamIsLeader()
			if !s.JetStreamIsCurrent() {
				return fmt.Errorf("JetStream on %s not current", s.Name())
			}
		}
		if !leader {
			return fmt.Errorf("no JetStream meta leader yet")
		}
		return nil
	})
	auth := nats.Nkey(pub, kp.Sign)
	// A leader may not see every peer yet: wait until a replicated
	// bucket can be placed.
	nc, err := servers[0].Connect(auth)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "probe", Replicas: 3})
		return err
	})
	return servers, auth
}

// TestKVMQTTContractR3: the contract on a three-server NATS cluster with
// three replicas, as production runs it (compare-and-set conflicts come
// back as another error code there; per-key TTLs are replicated), each
// handle on its own server. Each subtest has its own buckets.
func TestKVMQTTContractR3(t *testing.T) {
	if testing.Short() {
		t.Skip("a NATS cluster takes seconds to start")
	}
	servers, auth := startNATSCluster(t)
	var seq atomic.Int32
	open := func(t *testing.T, s *natsembed.Server, cfg KVConfig) *KV {
		nc, err := s.Connect(auth, nats.MaxReconnects(-1))
		if err != nil {
			t.Fatal(err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		// Each subtest places new R3 buckets (a raft group each): under
		// make test's load that can take longer than ctxT's 10 s, as a
		// node's start may (it retries for --store-wait), and longer than
		// the store's per-call Timeout, which bounds each bucket's
		// creation too (seen: 10 s for two buckets, in make test).
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if cfg.Timeout == 0 {
			cfg.Timeout = 30 * time.Second
		}
		// A loaded machine can also have the cluster take a peer for
		// offline for a moment ("no suitable peers for placement"): try
		// again, as a node does for --store-wait.
		var kv *KV
		for {
			kv, err = NewKV(ctx, js, cfg)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatal(err)
			}
			t.Logf("opening the buckets, trying again: %v", err)
			time.Sleep(200 * time.Millisecond)
		}
		t.Cleanup(func() {
			kv.Close()
			nc.Close()
		})
		return kv
	}
	runMQTTContract(t, func(t *testing.T, expiry time.Duration) *mqttFixture {
		cfg := KVConfig{Cluster: fmt.Sprint("r3-", seq.Add(1)), Replicas: 3, Timeout: 10 * time.Second,
			MQTTSessionExpiry: expiry, Logger: slog.New(slog.DiscardHandler)}
		return &mqttFixture{
			St:   open(t, servers[0], cfg),
			Peer: func(t *testing.T) MQTTSessions { return open(t, servers[1+int(seq.Load())%2], cfg) },
		}
	})
}
