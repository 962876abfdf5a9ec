package chaos

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pushring/pushring/internal/natsauth"
)

// NATSServer is one server of a NATS cluster, in a process of its own.
type NATSServer struct {
	*Daemon
	Client, Route, Monitor string // loopback addresses
}

// URL is the server's client URL.
func (s *NATSServer) URL() string { return "nats://" + s.Client }

// StartNATS starts n NATS servers nats1…nats<n> of bin, each under
// dir/nats<i>, routed to each other on loopback, each with JetStream on
// a file store of its own and the authorization block that gives each
// node of keys exactly the permissions a node of cluster needs (what
// `pushctl nats-config` prints for an external server). It returns once
// JetStream has a meta leader that every server names and every server
// is healthy; on an error, the servers it started (to be ended).
func StartNATS(bin, dir string, n int, cluster string, keys []natsauth.Key) ([]*NATSServer, error) {
	servers := make([]*NATSServer, 0, n)
	var routes []string
	for range n {
		var a [3]string
		for j := range a {
			var err error
			if a[j], err = FreeAddr(); err != nil {
				return nil, err
			}
		}
		servers = append(servers, &NATSServer{Client: a[0], Route: a[1], Monitor: a[2]})
		routes = append(routes, strconv.Quote("nats-route://"+a[1]))
	}
	auth := natsauth.Config(cluster, keys)
	for i, s := range servers {
		name := "nats" + strconv.Itoa(i+1)
		sdir := filepath.Join(dir, name)
		if err := os.MkdirAll(sdir, 0o700); err != nil {
			return servers[:i], err
		}
		conf := fmt.Sprintf(`server_name: %q
listen: %q
http: %q
no_sys_acc: false
jetstream {
  store_dir: %q
  max_memory_store: 268435456
  max_file_store: 4294967296
}
cluster {
  name: "chaos"
  listen: %q
  routes: [%s]
}
%s`, name, s.Client, s.Monitor, filepath.Join(sdir, "js"), s.Route, strings.Join(routes, ", "), auth)
		path := filepath.Join(sdir, "nats.conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			return servers[:i], err
		}
		s.Daemon = &Daemon{Name: name, Bin: bin, Args: []string{"-c", path}, Log: filepath.Join(sdir, name+".log")}
		if err := s.Start(); err != nil {
			return servers[:i], err
		}
	}
	return servers, WaitJetStream(servers, 60*time.Second)
}

// MetaLeader is the JetStream meta leader as s sees it ("" if none).
func (s *NATSServer) MetaLeader() (string, error) {
	var j struct {
		Meta *struct {
			Leader string `json:"leader"`
		} `json:"meta_cluster"`
	}
	if err := getJSON("http://"+s.Monitor+"/jsz", "", &j); err != nil {
		return "", err
	}
	if j.Meta == nil {
		return "", nil
	}
	return j.Meta.Leader, nil
}

// HasClient reports whether a client connection named name (a pushring
// node names its connection "pushring-<node id>") is on s.
func (s *NATSServer) HasClient(name string) (bool, error) {
	var c struct {
		Conns []struct {
			Name string `json:"name"`
		} `json:"connections"`
	}
	if err := getJSON("http://"+s.Monitor+"/connz?limit=1024", "", &c); err != nil {
		return false, err
	}
	for _, conn := range c.Conns {
		if conn.Name == name {
			return true, nil
		}
	}
	return false, nil
}

// WaitJetStream waits until every server that is up names the same
// JetStream meta leader and answers its /healthz (which checks that its
// JetStream assets are current) with 200. A server that exited without
// being told to ends the wait at once, with its log's tail.
func WaitJetStream(servers []*NATSServer, within time.Duration) error {
	return WaitFor(within, 100*time.Millisecond, func() error {
		leader := ""
		for _, s := range servers {
			if err := s.crashed(); err != nil {
				return GiveUp{err}
			}
			if !s.Up() {
				continue // killed or stopped on purpose: it answers nothing
			}
			l, err := s.MetaLeader()
			if err != nil {
				return err
			}
			if l == "" || (leader != "" && l != leader) {
				return fmt.Errorf("%s sees meta leader %q (others %q)", s.Name, l, leader)
			}
			leader = l
			if err := getJSON("http://"+s.Monitor+"/healthz", "", nil); err != nil {
				return fmt.Errorf("%s: %w", s.Name, err)
			}
		}
		if leader == "" {
			return errors.New("no NATS server runs")
		}
		return nil
	})
}
