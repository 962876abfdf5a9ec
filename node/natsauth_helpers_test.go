package node

import (
	"path/filepath"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/pushring/pushring/internal/natsauth"
	"github.com/pushring/pushring/internal/natsembed"
)

// nodeKey creates (or loads) the nkey seed a node started on dir will
// use, <dir>/nats.nk, and returns its public key and the nats.Option
// that signs in with it.
func nodeKey(t testing.TB, dir string) (string, nats.Option) {
	t.Helper()
	kp, _, err := natsauth.LoadOrCreateSeed(filepath.Join(dir, "nats.nk"))
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return pub, nats.Nkey(pub, kp.Sign)
}

// nodeUser is the embedded server's user for node id of cluster with key
// pub: the permissions a node gets in production.
func nodeUser(cluster, id, pub string) natsembed.User {
	p := natsauth.NodePermissions(cluster, id)
	return natsembed.User{PublicKey: pub, Permissions: &p}
}

// sharedNATS is a NATS server the test process runs for nodes that
// reach it by URL, as production nodes reach a NATS cluster: each node
// signs in with its own key and gets a node's permissions. The harness
// itself holds an unlimited key (the server needs one user to listen).
type sharedNATS struct {
	*natsembed.Server
	mu    sync.Mutex
	users []natsembed.User
}

func harnessUser(t testing.TB) natsembed.User {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return natsembed.User{PublicKey: pub}
}

func startSharedNATS(t testing.TB, cfg natsembed.Config) *sharedNATS {
	t.Helper()
	cfg.Users = append(cfg.Users, harnessUser(t))
	s, err := natsembed.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return &sharedNATS{Server: s, users: cfg.Users}
}

// authorize lets node id of cluster sign in with the key of data dir dir
// (created there if missing).
func (s *sharedNATS) authorize(t testing.TB, cluster, id, dir string) {
	t.Helper()
	pub, _ := nodeKey(t, dir)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users = append(s.users, nodeUser(cluster, id, pub))
	if err := s.SetUsers(s.users); err != nil {
		t.Fatal(err)
	}
}
