// Package membership knows which nodes are alive and where principals and
// groups are placed among them.
//
// Three implementations answer the same questions (Self, Nodes, Home,
// Owner, HomeNode):
//
//   - Static: one node, everything on it, without gossip (tests; a node
//     always runs a Cluster, even alone).
//   - Cluster: the gossip view (hashicorp/memberlist) with a consistent
//     hash ring (package ring) over the live nodes.
//   - Memory: peers set by the caller, for unit tests of the packages that
//     place principals and groups; listeners run synchronously.
//
// # Snapshots
//
// Every membership change builds a new immutable view — a *ring.Ring plus
// the description of each node on it — and swaps it in with one atomic
// store. Home, Owner and Ring are one atomic load and a binary search: no
// lock, no allocation. A caller that makes several decisions that must
// agree (split a member list, then send) takes Ring() once and uses that.
// The ring is rebuilt only when the set of live nodes changes; metadata
// updates keep the same *ring.Ring.
//
// All nodes converge on the same ring once their live sets agree: the
// ring depends only on the sorted node ids and the number of virtual
// nodes, which every node advertises and checks.
//
// # Change notification
//
// memberlist calls its event delegate with its node lock held, so the
// delegate only updates the member table, publishes the new view and
// wakes a notifier goroutine. The notifier calls OnChange listeners (in
// registration order, one change at a time, skipping rings that were
// already replaced) and signals Subscribe channels. A listener sees
// old → new with old the ring it was last given, so it can compute what
// moved (old.Home(id) != new.Home(id)) without tracking state itself.
//
// # Dead or left
//
// memberlist tells a clean leave from a failure internally but does not
// pass the difference to its event delegate. So Leave first re-advertises
// this node's metadata with a "leaving" flag (memberlist UpdateNode), then
// calls memberlist's Leave. Peers mark a node with the flag "left" and
// drop it from their ring as soon as the flag arrives; a node that goes
// silent without it is "dead" once failure detection gives up on it
// (about 1–2 s with DefaultConfig on a LAN or loopback). memberlist's
// "suspect" state is not visible either: a suspect node stays "alive" and
// on the ring until it is declared dead.
//
// # Metadata
//
// Node metadata (id, MQTT and HTTP addresses, version, virtual nodes,
// the leaving flag) is a small versioned binary form (see meta.go), at
// most metaMaxSize bytes, memberlist's limit (memberlist.MetaMaxSize). A
// peer whose metadata does not decode, or names another id than its
// memberlist name, is logged and kept off the ring.
//
// # Locks
//
// LOCKS.md, at the repository root, lists the locks of this package and
// their order. The rule for callers: OnChange listeners run on the
// notifier goroutine with placement.notifyMu held, so a listener must
// return quickly and must call neither Close (which waits for the
// notifier) nor Leave.
package membership
