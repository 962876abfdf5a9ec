package node

import (
	"testing"

	"github.com/pushring/pushring/store"
)

// TestMaxSecretLenFitsCredentials: every credential the store issues is
// short enough to be checked at all.
func TestMaxSecretLenFitsCredentials(t *testing.T) {
	tok, _, err := store.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := store.NewDeviceKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) > maxSecretLen || len(key) > maxSecretLen {
		t.Fatalf("token %d bytes, device key %d bytes, maxSecretLen %d", len(tok), len(key), maxSecretLen)
	}
}
