package router

import (
	"context"
	"errors"
	"time"

	"github.com/pushring/pushring/message"
)

var (
	// ErrBadCredentials: unknown principal, wrong key, unknown, expired or
	// revoked token, or a token that belongs to another principal.
	// CONNACK 0x04 (3.1.1) / 0x86 (5.0).
	ErrBadCredentials = errors.New("router: bad credentials")
	// ErrAuthUnavailable: the auth backend failed; fail closed.
	// CONNACK 0x03 (3.1.1) / 0x88 (5.0).
	ErrAuthUnavailable = errors.New("router: auth unavailable")
	// ErrNotAuthorized: the credentials are valid but do not admit this
	// principal here (a client certificate for a principal that is not a
	// known device). CONNACK 0x05 (3.1.1) / 0x87 (5.0).
	ErrNotAuthorized = errors.New("router: not authorized")
)

// Identity is who a connection is, as proven by its credentials.
type Identity struct {
	ID     string // principal id, always store.ValidID
	Device bool
	// TokenHash is the hex SHA-256 of the session token the connection
	// used ("" for device keys): Revoke closes connections by it.
	TokenHash string
	// Expires is when the session token expires (zero for device keys).
	Expires time.Time
}

// Authenticator checks credentials. Goroutine-safe; may block on the
// store (honours ctx).
type Authenticator interface {
	// Authenticate checks CONNECT credentials: username is the principal
	// id, password a session token (users) or a device key (devices).
	Authenticate(ctx context.Context, username string, password []byte) (Identity, error)
	// AuthenticateToken checks a bare session token (auth-topic mode).
	AuthenticateToken(ctx context.Context, token []byte) (Identity, error)
	// AuthenticateCert admits the principal named by a client
	// certificate the TLS handshake verified against the client CA (id
	// is its Subject Common Name). Only devices log in this way: a
	// certificate for a user, or for no known principal, is
	// ErrNotAuthorized. The returned Identity must have Device set.
	AuthenticateCert(ctx context.Context, id string) (Identity, error)
}

// ACL answers authorization questions from the node's in-memory
// directory. Goroutine-safe and non-blocking: it is called per packet.
type ACL interface {
	// CanPublishGroup: id is a publisher of gid, or a member of a group
	// whose members may publish.
	CanPublishGroup(id, gid string) bool
	// IsMember: id is a member of gid (may subscribe to /group/<gid>).
	IsMember(gid, id string) bool
	// CanDirect: from may send a direct message to to: from == to, or
	// they share a group.
	CanDirect(from, to string) bool
}

// Forwarder takes a message accepted from a local client into the
// cluster. fanout implements it; node wires it in.
type Forwarder interface {
	// Forward hands m on (resolution, routing, delivery happen behind
	// it). When it returns nil the message is handed on and a QoS 1
	// publisher may be acknowledged. Goroutine-safe; may block briefly.
	// Neither m nor m.Payload may be kept after the call returns (the
	// router reuses both: the payload is the read buffer); copy what is
	// kept.
	Forward(ctx context.Context, m *message.Message) error
}
