package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pushring/pushring/router"
	"github.com/pushring/pushring/store"
)

// TestAuthenticateTokenNeedsPrincipal: a token whose user is gone (a
// session a delete did not find) is refused, with or without a
// username; the same token is accepted while the user exists.
func TestAuthenticateTokenNeedsPrincipal(t *testing.T) {
	ctx := context.Background()
	st := store.NewMemory()
	a := &authenticator{st: st}
	if err := st.CreatePrincipal(ctx, store.Principal{ID: "alice", Kind: store.User}); err != nil {
		t.Fatal(err)
	}
	tok, hash, _ := store.NewToken()
	if err := st.CreateSession(ctx, store.Session{TokenHash: hash, PrincipalID: "alice", Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	ghostTok, ghostHash, _ := store.NewToken()
	if err := st.CreateSession(ctx, store.Session{TokenHash: ghostHash, PrincipalID: "ghost", Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if id, err := a.AuthenticateToken(ctx, []byte(tok)); err != nil || id.ID != "alice" {
		t.Fatalf("alice's token: %+v, %v", id, err)
	}
	if id, err := a.Authenticate(ctx, "alice", []byte(tok)); err != nil || id.ID != "alice" {
		t.Fatalf("alice's token with her name: %+v, %v", id, err)
	}
	if _, err := a.AuthenticateToken(ctx, []byte(ghostTok)); !errors.Is(err, router.ErrBadCredentials) {
		t.Fatalf("a token of no principal: %v, want ErrBadCredentials", err)
	}
	if _, err := a.Authenticate(ctx, "ghost", []byte(ghostTok)); !errors.Is(err, router.ErrBadCredentials) {
		t.Fatalf("a token of no principal, with its name: %v, want ErrBadCredentials", err)
	}
}
