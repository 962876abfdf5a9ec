package api

import (
	"testing"

	"github.com/pushring/pushring/store"
)

// TestMaxCredentialBytesFitsCredentials: every credential the store
// issues is short enough to be checked at all.
func TestMaxCredentialBytesFitsCredentials(t *testing.T) {
	tok, _, err := store.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := store.NewDeviceKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) > maxCredentialBytes || len(key) > maxCredentialBytes {
		t.Fatalf("token %d bytes, device key %d bytes, maxCredentialBytes %d", len(tok), len(key), maxCredentialBytes)
	}
}
