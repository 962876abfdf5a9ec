package node

import (
	"context"
	"errors"

	"github.com/pushring/pushring/router"
	"github.com/pushring/pushring/store"
)

// authenticator checks MQTT credentials against the store: the username is
// a principal id; the password is a session token for users and the device
// key for devices. Every store failure other than "not found" fails closed
// as ErrAuthUnavailable (CONNACK 0x03), never as success.
type authenticator struct {
	st store.Store
}

var _ router.Authenticator = (*authenticator)(nil)

// maxSecretLen bounds what is hashed: session tokens and device keys
// (store.NewToken, store.NewDeviceKey) are much shorter, so anything
// longer is refused without work.
const maxSecretLen = 256

// Every issued secret fits under maxSecretLen: a negative array length
// fails to compile otherwise.
var _ [maxSecretLen - store.SecretLen]struct{}

func (a *authenticator) Authenticate(ctx context.Context, username string, password []byte) (router.Identity, error) {
	if !store.ValidID(username) || len(password) == 0 || len(password) > maxSecretLen {
		return router.Identity{}, router.ErrBadCredentials
	}
	p, err := a.st.Principal(ctx, username)
	if err != nil {
		return router.Identity{}, mapStoreErr(err)
	}
	if p.Kind == store.Device {
		if !store.CheckDeviceKey(p.SecretHash, string(password)) {
			return router.Identity{}, router.ErrBadCredentials
		}
		return router.Identity{ID: p.ID, Device: true}, nil
	}
	s, err := a.tokenSession(ctx, password)
	if err != nil {
		return router.Identity{}, err
	}
	if !s.Of(p) {
		return router.Identity{}, router.ErrBadCredentials // an earlier principal of this id
	}
	id := identityOf(s)
	// The identity comes from the validated token; a username that
	// disagrees with it is somebody else's token: refused, so a stolen
	// token cannot be used under its victim's name, nor the other way.
	if id.ID != p.ID {
		return router.Identity{}, router.ErrBadCredentials
	}
	return id, nil
}

// AuthenticateToken admits a session token whose principal still
// exists, as the one that logged in: a deleted user's tokens stop at
// once, even one its deletion did not find to revoke, and stay stopped
// if the id is made again.
func (a *authenticator) AuthenticateToken(ctx context.Context, token []byte) (router.Identity, error) {
	s, err := a.tokenSession(ctx, token)
	if err != nil {
		return router.Identity{}, err
	}
	p, err := a.st.Principal(ctx, s.PrincipalID)
	if err != nil {
		return router.Identity{}, mapStoreErr(err)
	}
	if !s.Of(p) {
		return router.Identity{}, router.ErrBadCredentials // an earlier principal of this id
	}
	return identityOf(s), nil
}

// tokenSession looks a session token up.
func (a *authenticator) tokenSession(ctx context.Context, token []byte) (store.Session, error) {
	if len(token) == 0 || len(token) > maxSecretLen {
		return store.Session{}, router.ErrBadCredentials
	}
	s, err := a.st.Session(ctx, store.HashToken(string(token)))
	if err != nil {
		return store.Session{}, mapStoreErr(err)
	}
	return s, nil
}

func identityOf(s store.Session) router.Identity {
	return router.Identity{ID: s.PrincipalID, TokenHash: s.TokenHash, Expires: s.Expires}
}

func mapStoreErr(err error) error {
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalidID) {
		return router.ErrBadCredentials
	}
	return router.ErrAuthUnavailable
}

// AuthenticateCert admits a device by the client certificate the TLS
// handshake verified against the client CA: id, the certificate's Subject
// Common Name, must be a device in the store. A certificate never logs a
// user in (users prove themselves with a password, then a session token),
// nor an unknown id: both are ErrNotAuthorized (CONNACK 0x05).
func (a *authenticator) AuthenticateCert(ctx context.Context, id string) (router.Identity, error) {
	if !store.ValidID(id) {
		return router.Identity{}, router.ErrNotAuthorized
	}
	p, err := a.st.Principal(ctx, id)
	if err != nil {
		if err = mapStoreErr(err); errors.Is(err, router.ErrBadCredentials) {
			err = router.ErrNotAuthorized
		}
		return router.Identity{}, err
	}
	if p.Kind != store.Device {
		return router.Identity{}, router.ErrNotAuthorized
	}
	return router.Identity{ID: p.ID, Device: true}, nil
}
