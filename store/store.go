// Package store keeps principals (users and devices), groups, group roles
// and login sessions. Two implementations share one contract (Store, and
// the contract tests that run against both): KV on NATS JetStream
// key-value buckets (production, kv.go) and Memory (unit tests,
// memory.go).
//
// Directory (directory.go) sits on top of either and is itself a Store:
// it keeps an in-memory view of groups and roles, fresh through watches,
// so the hot paths (ACL checks, group resolution) never wait on the
// store, and it tells OnRevoke callbacks (the router) about logouts.
// secret.go holds the credentials: argon2id password hashes, session
// tokens and device keys, stored only as hashes.
//
// MQTT session records (mqtt.go; MQTTSessions, met by KV and Memory) are
// what a node needs to resume an MQTT session anywhere in the cluster:
// its holder and generation, subscriptions and delivery position, with
// compare-and-set claims, per-record expiry and a watch of takeovers.
// MQTTPosBatcher (mqtt_batch.go) turns many position updates into one
// write per session per interval.
//
// LOCKS.md, at the repository root, lists the locks of this package: a
// Directory read takes its read lock only, and neither the backing store
// nor an OnRevoke callback is called with a Directory lock held.
package store

import (
	"context"
	"errors"
	"regexp"
	"time"
)

var (
	// ErrNotFound: no such principal, group, role or session.
	ErrNotFound = errors.New("store: not found")
	// ErrExists: a create hit an id that is taken.
	ErrExists = errors.New("store: already exists")
	// ErrInvalidID: an id outside ValidID.
	ErrInvalidID = errors.New("store: invalid id")
	// ErrUnavailable: the backend could not answer (timeout, no quorum).
	// Callers fail closed on it.
	ErrUnavailable = errors.New("store: unavailable")
)

// Kind of principal. Users and devices share one id space.
type Kind string

const (
	User   Kind = "user"
	Device Kind = "device"
)

// Principal is a user or a device.
type Principal struct {
	ID   string `json:"id"`
	Kind Kind   `json:"kind"`
	// SecretHash is the argon2id hash of a user's password (PHC string
	// form) or the hex SHA-256 of a device key (keys are 256-bit random, so
	// a fast hash is enough and keeps CONNECT cheap).
	SecretHash string    `json:"secret_hash"`
	Created    time.Time `json:"created"`
}

// Group is a fan-out target.
type Group struct {
	ID                string    `json:"id"`
	MembersCanPublish bool      `json:"members_can_publish"`
	Created           time.Time `json:"created"`
}

// Role of a principal in a group. A principal may hold both.
type Role uint8

const (
	// Member receives every message of the group on its private topic.
	Member Role = 1
	// Publisher may publish to the group topic (devices, typically).
	Publisher Role = 2
)

func (r Role) String() string {
	switch r {
	case Member:
		return "member"
	case Publisher:
		return "publisher"
	}
	return "role?"
}

// Session is a login. The token itself is never stored: only its SHA-256.
type Session struct {
	TokenHash   string    `json:"token_hash"` // hex SHA-256 of the token
	PrincipalID string    `json:"principal_id"`
	Created     time.Time `json:"created"`
	Expires     time.Time `json:"expires"`
	// PrincipalCreated is the Created of the principal that logged in:
	// a principal deleted and made again under the same id is another
	// one, and the old one's sessions are not its (see Of).
	PrincipalCreated time.Time `json:"principal_created,omitzero"`
}

// Of reports whether the session belongs to p as it is now, not to an
// earlier principal of the same id. A session written before
// PrincipalCreated existed belongs to p if it began after p was made.
func (s Session) Of(p Principal) bool {
	if s.PrincipalID != p.ID {
		return false
	}
	if s.PrincipalCreated.IsZero() {
		return !s.Created.Before(p.Created)
	}
	return s.PrincipalCreated.Equal(p.Created)
}

// Expired reports whether the session is past its expiry at now.
func (s Session) Expired(now time.Time) bool { return !now.Before(s.Expires) }

// EventType says what changed.
type EventType uint8

const (
	GroupPut         EventType = iota + 1 // Group created or updated
	GroupDeleted                          // Group removed
	RoleSet                               // Principal got Role in Group
	RoleRemoved                           // Principal lost Role in Group
	SessionRevoked                        // session TokenHash deleted (logout)
	PrincipalPut                          // Principal created, or its secret changed (Kind set)
	PrincipalDeleted                      // Principal removed
)

// Event is one change seen by Watch.
type Event struct {
	Type      EventType
	Group     Group  // GroupPut, GroupDeleted (ID only)
	GroupID   string // RoleSet, RoleRemoved
	Principal string // RoleSet, RoleRemoved, PrincipalPut, PrincipalDeleted
	Role      Role   // RoleSet, RoleRemoved
	TokenHash string // SessionRevoked
	Kind      Kind   // PrincipalPut
}

// Store is the contract both implementations meet. All methods are
// goroutine-safe and may block on the backend (honour ctx).
type Store interface {
	CreatePrincipal(ctx context.Context, p Principal) error // ErrExists, ErrInvalidID
	Principal(ctx context.Context, id string) (Principal, error)

	CreateGroup(ctx context.Context, g Group) error // ErrExists, ErrInvalidID
	Group(ctx context.Context, gid string) (Group, error)

	// SetRole gives (on=true) or takes (on=false) role r in group gid to
	// principal id. The group and the principal must exist (ErrNotFound).
	// Setting a role that is held, or removing one that is not, is no error.
	// Every successful call is one change that Watch reports (RoleSet or
	// RoleRemoved), even when it changes nothing: Directory relies on it to
	// order its own writes against watched ones.
	SetRole(ctx context.Context, gid, id string, r Role, on bool) error
	// Roles lists the members and publishers of gid, sorted.
	Roles(ctx context.Context, gid string) (members, publishers []string, err error)

	CreateSession(ctx context.Context, s Session) error
	// Session returns the session for a token hash; expired sessions are
	// ErrNotFound.
	Session(ctx context.Context, tokenHash string) (Session, error)
	DeleteSession(ctx context.Context, tokenHash string) error

	// Watch calls fn for every group and role that exists now (as GroupPut
	// and RoleSet events), then calls ready once, then calls fn for every
	// later change, including SessionRevoked, PrincipalPut and
	// PrincipalDeleted, until ctx is done. fn is called from one
	// goroutine at a time and must not block for long.
	Watch(ctx context.Context, fn func(Event), ready func()) error

	Admin

	Close() error
}

// Admin is what the admin API needs beyond the hot paths: listing,
// deleting and changing principals and groups. Lists are pages in byte
// order of id: the ids after `after` (the previous page's cursor; ""
// from the start) that start with prefix, at most limit of them; next is
// the cursor of the following page, "" after the last. A page may hold
// fewer than limit and still have a next (a bounded scan, see
// MaxListScan).
type Admin interface {
	ListPrincipals(ctx context.Context, kind Kind, prefix, after string, limit int) (ps []Principal, next string, err error)
	ListGroups(ctx context.Context, prefix, after string, limit int) (gs []Group, next string, err error)
	// PrincipalRoles returns the roles principal id holds, by group id
	// (none: an empty map; the principal need not exist).
	PrincipalRoles(ctx context.Context, id string) (map[string]Role, error)
	// Sessions returns the unexpired login sessions of principal id,
	// oldest first.
	Sessions(ctx context.Context, id string) ([]Session, error)
	// SetSecret replaces the secret hash of principal id (ErrNotFound);
	// watchers see PrincipalPut.
	SetSecret(ctx context.Context, id, secretHash string) error
	// DeletePrincipal removes principal id, then its roles, login
	// sessions and MQTT session records. Watchers see PrincipalDeleted,
	// a RoleRemoved per role and a SessionRevoked per session. With no
	// such principal it still sweeps what one of that id left (a delete
	// that failed half way) and returns ErrNotFound.
	DeletePrincipal(ctx context.Context, id string) error
	// DeleteGroup removes group gid (ErrNotFound), then its roles.
	// Watchers see GroupDeleted and a RoleRemoved per role.
	DeleteGroup(ctx context.Context, gid string) error
}

// MaxListScan bounds the records one list call reads to fill a page of
// one kind of principal (users and devices share one key space): a page
// can come back short, with a next cursor, rather than read everything.
const MaxListScan = 1000

// MaxListLimit is the largest page a list call returns.
const MaxListLimit = 500

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// ValidID reports whether id may name a principal or group: 1 to 64 of
// [A-Za-z0-9_.-], and not "." or ".." (they would read as path steps).
// Wildcards, '/', NUL and spaces can never appear, so an id is always
// exactly one topic level.
func ValidID(id string) bool {
	return id != "." && id != ".." && idPattern.MatchString(id)
}
