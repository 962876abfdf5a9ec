// Package natsauth holds what a pushring node's NATS identity is made of:
// its user nkey (a seed file), the authorized-keys file of an embedded
// server, the private inbox prefix of each node, and the least-privilege
// permissions each node's connection gets. The embedded server applies
// them; Config prints them as the authorization block of an external
// nats-server, so both enforce the same table.
//
// The permissions name pushring's subjects literally: the fanout subject
// of every node (pushring.<cluster>.node.<id>), the topic subjects of
// the cluster's topic messages (pushring.<cluster>.t.>), the KV buckets
// <cluster>_<bucket> of Buckets and the JetStream API calls the nats.go
// KV client makes for them. A subject the code starts using must be added
// here: the node's tests run against these permissions, and a node
// refused a subject fails to start or logs a permissions violation.
package natsauth

import (
	"github.com/pushring/pushring/internal/secretfile"

	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/nats-io/nkeys"
)

// Buckets are the suffixes of the KV buckets a cluster uses
// ("<cluster>_<suffix>"), as the store creates them.
var Buckets = []string{"principals", "groups", "roles", "sessions", "mqtt"}

// Key is one node allowed on NATS: its id and its public user nkey.
type Key struct {
	NodeID    string
	PublicKey string
}

// Permissions of one node's connection: the subjects it may publish to
// and subscribe to.
type Permissions struct {
	Publish   []string
	Subscribe []string
}

// InboxPrefix is the prefix of the reply subjects of node nodeID of
// cluster: each node subscribes to its own inbox only, so no node reads
// the replies (KV values, session records) another node asked for. The
// cluster name is one token and a node id has no '.', so two nodes never
// share a prefix.
func InboxPrefix(cluster, nodeID string) string {
	return "_INBOX_" + cluster + "." + nodeID
}

// NodeSubject is the subject node nodeID of cluster receives its fanout
// envelopes on (fanout.Subject; repeated here so this package imports
// nothing of the server).
func NodeSubject(cluster, nodeID string) string {
	return "pushring." + cluster + ".node." + nodeID
}

// TopicSubjects are the subjects of cluster's topic messages (fanout's
// TopicSubject and FilterSubjects: one token per MQTT topic level under
// pushring.<cluster>.t.): every node publishes topic messages there and
// subscribes there to the filters its sessions hold.
func TopicSubjects(cluster string) string { return "pushring." + cluster + ".t.>" }

// JournalStream is the JetStream stream of the QoS 1 messages of cluster
// (the journal package's stream).
func JournalStream(cluster string) string { return "MSGS_" + cluster }

// JournalSubjects are the subjects of cluster's journal stream:
// pushring.<cluster>.m.<ingress node>.<d|g>.<to>.
func JournalSubjects(cluster string) string { return "pushring." + cluster + ".m.>" }

// JournalIngress are the journal subjects of the messages node nodeID
// stores: the only ones it may publish to, so that a node cannot store a
// message under another node's ingress id.
func JournalIngress(cluster, nodeID string) string {
	return "pushring." + cluster + ".m." + nodeID + ".>"
}

// ClaimsStream is the JetStream stream of cluster's MQTT claim notices
// (the store package's), on the one subject ClaimsSubject.
func ClaimsStream(cluster string) string { return "CLAIMS_" + cluster }

// ClaimsSubject is the subject of cluster's claim notices.
func ClaimsSubject(cluster string) string { return "pushring." + cluster + ".claims" }

// clusterPattern is what a cluster name may be: it prefixes NATS subjects
// and KV bucket names, so a '.', '*' or '>' in it would turn the
// permissions of one cluster into wildcards over others.
var clusterPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,200}$`)

// ValidCluster reports whether name can be a cluster name: 1 to 200 of
// A-Z, a-z, 0-9, '_' and '-'.
func ValidCluster(name string) bool { return clusterPattern.MatchString(name) }

// NodePermissions are the subjects node nodeID of cluster needs, and
// nothing more: publish to any node's fanout subject of the cluster, to
// the cluster's topic subjects and to the cluster's buckets (KV writes,
// the JetStream API calls of the KV client on those streams only), to the
// journal under its own ingress id (and the journal's API calls on that
// stream only), subscribe to its own fanout subject, to the cluster's
// topic subjects (any of them: which ones depends on its sessions'
// subscriptions) and to its own inbox. Nothing of another cluster, no
// other stream, no $SYS.
func NodePermissions(cluster, nodeID string) Permissions {
	p := Permissions{
		Publish: []string{
			NodeSubject(cluster, "*"),
			TopicSubjects(cluster),
			"$JS.API.INFO", // account info: the KV client checks JetStream is on
		},
		Subscribe: []string{
			NodeSubject(cluster, nodeID),
			TopicSubjects(cluster),
			InboxPrefix(cluster, nodeID) + ".>",
		},
	}
	// Only the calls the KV client makes on a server of 2.9 or later
	// (named consumers, direct gets: every bucket has AllowDirect): a
	// creds-file JWT carries these subjects in the client's CONNECT,
	// which the server caps at its max_control_line (4 KiB by default).
	for _, b := range Buckets {
		bucket := cluster + "_" + b
		stream := "KV_" + bucket
		p.Publish = append(p.Publish, "$KV."+bucket+".>") // put, create, update, delete
		if b == "mqtt" {
			// Looked up by name (the store health check, the node's
			// own reads); the others are only ever created or updated,
			// which answers with the stream's info.
			p.Publish = append(p.Publish, "$JS.API.STREAM.INFO."+stream)
		}
		p.Publish = append(p.Publish,
			"$JS.API.STREAM.CREATE."+stream,        // create it if missing
			"$JS.API.STREAM.UPDATE."+stream,        // or update its config
			"$JS.API.DIRECT.GET."+stream+".>",      // get the last value of a key
			"$JS.API.CONSUMER.CREATE."+stream+".>", // watch: a named ordered consumer
			consumerCalls(stream),                  // stop watching, consumer checks
			"$JS.FC."+stream+".>",                  // watch flow control replies
		)
	}
	// The journal: store under this node's own ingress id only; read
	// the whole stream back (a session's backlog holds every node's
	// messages) with ordered pull consumers, deleted after each replay;
	// delete single messages stored for a publisher that was not
	// acknowledged (the API cannot scope a delete to a subject; a node
	// may update the stream's limits anyway).
	stream := JournalStream(cluster)
	p.Publish = append(p.Publish,
		JournalIngress(cluster, nodeID),
		"$JS.API.STREAM.INFO."+stream,            // bounds, open
		"$JS.API.STREAM.CREATE."+stream,          // create it if missing
		"$JS.API.STREAM.UPDATE."+stream,          // or update its config
		"$JS.API.CONSUMER.CREATE."+stream+".>",   // replay: with a name (and filter)
		consumerCalls(stream),                    // replay done (delete), replay stalled (info: still pending?)
		"$JS.API.CONSUMER.MSG.NEXT."+stream+".*", // replay: pull
		"$JS.API.STREAM.MSG.DELETE."+stream,      // withdraw a message not acknowledged
		"$JS.API.STREAM.MSG.GET."+stream,         // replay: is a young record withdrawn?
	)
	// The claim notices: publish them, create the stream if missing
	// (no update: its settings are constants, see the store package),
	// read it with ordered pull consumers (create, info, delete, pull).
	// Four entries, not the journal's eight: a node id of 32 bytes
	// still fits the CONNECT's 4 KiB.
	claims := ClaimsStream(cluster)
	p.Publish = append(p.Publish,
		ClaimsSubject(cluster),
		"$JS.API.STREAM.CREATE."+claims,
		"$JS.API.CONSUMER.*."+claims+".>",
		"$JS.API.CONSUMER.MSG.NEXT."+claims+".*",
	)
	return p
}

// consumerCalls are the JetStream API calls on one consumer of stream:
// DELETE and INFO are the ones used, named by one entry for both (PAUSE
// and UNPIN come with it, no more than a node that may delete the
// consumer could do anyway): every entry spends room in a creds file's
// JWT, which travels in a CONNECT the server caps at 4 KiB.
func consumerCalls(stream string) string { return "$JS.API.CONSUMER.*." + stream + ".*" }

// validNodeID is node.Config's rule for a node id: a subject token.
func validNodeID(id string) bool {
	return id != "" && len(id) <= 64 && !strings.ContainsAny(id, ".*> \t\r\n")
}

// ParseAuthorizedKeys reads an authorized-keys file: one "<node-id>
// <public-nkey>" a line; blank lines and '#' comments are skipped. A bad
// line, a node id or a key listed twice is an error naming its line, so a
// typo never silently leaves a node out (or in).
func ParseAuthorizedKeys(r io.Reader) ([]Key, error) {
	var keys []Key
	ids, pubs := map[string]int{}, map[string]int{}
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(text)
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: want \"<node-id> <public-nkey>\"", line)
		}
		k := Key{NodeID: f[0], PublicKey: f[1]}
		if !validNodeID(k.NodeID) {
			return nil, fmt.Errorf("line %d: bad node id %q", line, k.NodeID)
		}
		if !nkeys.IsValidPublicUserKey(k.PublicKey) {
			return nil, fmt.Errorf("line %d: %q is not a public user nkey (U...)", line, k.PublicKey)
		}
		if prev, dup := ids[k.NodeID]; dup {
			return nil, fmt.Errorf("line %d: node %s already listed on line %d", line, k.NodeID, prev)
		}
		if prev, dup := pubs[k.PublicKey]; dup {
			return nil, fmt.Errorf("line %d: key already listed on line %d", line, prev)
		}
		ids[k.NodeID], pubs[k.PublicKey] = line, line
		keys = append(keys, k)
	}
	return keys, sc.Err()
}

// ReadAuthorizedKeys is ParseAuthorizedKeys of the file at path.
func ReadAuthorizedKeys(path string) ([]Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	keys, err := ParseAuthorizedKeys(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return keys, nil
}

// LoadOrCreateSeed returns the user nkey whose seed is stored at path,
// or creates one there (mode 0600, never overwriting a file) when there
// is none; created says which. The file may hold the bare seed or a
// decorated one (as nsc writes).
func LoadOrCreateSeed(path string) (kp nkeys.KeyPair, created bool, err error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		kp, err := nkeys.ParseDecoratedNKey(b)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", path, err)
		}
		if pub, _ := kp.PublicKey(); !nkeys.IsValidPublicUserKey(pub) {
			return nil, false, fmt.Errorf("%s: not a user nkey seed (SU...)", path)
		}
		return kp, false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, false, err
	}
	kp, err = nkeys.CreateUser()
	if err != nil {
		return nil, false, err
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, false, err
	}
	if err := secretfile.WriteNew(path, append(seed, '\n')); err != nil {
		return nil, false, err
	}
	return kp, true, nil
}

// Config is the authorization block of a nats-server configuration file
// that gives each node of keys NodePermissions(cluster, id): an operator
// running an external NATS pastes it into the server's config (or
// includes it) to enforce what the embedded server enforces.
func Config(cluster string, keys []Key) string {
	var b bytes.Buffer
	b.WriteString("# pushring cluster " + cluster + ": one user nkey per node, least privilege.\n")
	b.WriteString("authorization {\n  users = [\n")
	list := func(subjects []string) string {
		q := make([]string, len(subjects))
		for i, s := range subjects {
			q[i] = strconv.Quote(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	for _, k := range keys {
		p := NodePermissions(cluster, k.NodeID)
		fmt.Fprintf(&b, "    # node %s\n", k.NodeID)
		fmt.Fprintf(&b, "    { nkey: %q, permissions: {\n", k.PublicKey)
		fmt.Fprintf(&b, "        publish: { allow: %s }\n", list(p.Publish))
		fmt.Fprintf(&b, "        subscribe: { allow: %s }\n", list(p.Subscribe))
		b.WriteString("    } }\n")
	}
	b.WriteString("  ]\n}\n")
	return b.String()
}
