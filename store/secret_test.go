package store

import (
	"encoding/hex"
	"regexp"
	"strings"
	"testing"
)

func TestHashPassword(t *testing.T) {
	h, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`).MatchString(h) {
		t.Fatalf("not PHC argon2id: %q", h)
	}
	h2, _ := HashPassword("correct horse")
	if h == h2 {
		t.Fatal("same hash twice: salt not random")
	}
	// Each check costs a full argon2id run (slow under -race): few of them.
	if !CheckPassword(h2, "correct horse") {
		t.Fatal("right password refused")
	}
	for _, pw := range []string{"", "correct horse "} {
		if CheckPassword(h, pw) {
			t.Fatalf("wrong password %q accepted", pw)
		}
	}
}

func TestCheckPasswordMalformed(t *testing.T) {
	h, _ := HashPassword("pw")
	parts := strings.Split(h, "$")
	join := func(p ...string) string { return strings.Join(p, "$") }
	bad := []string{
		"", "pw", "$", h + "$", "$" + h, strings.Replace(h, "argon2id", "argon2i", 1),
		join("", "argon2id", "v=18", parts[3], parts[4], parts[5]),
		join("", "argon2id", "v=19x", parts[3], parts[4], parts[5]),
		join("", "argon2id", parts[2], "m=19456,t=2", parts[4], parts[5]),
		join("", "argon2id", parts[2], "m=19456,t=0,p=1", parts[4], parts[5]),
		join("", "argon2id", parts[2], "m=19456,t=2,p=0", parts[4], parts[5]),
		join("", "argon2id", parts[2], "m=4294967295,t=2,p=1", parts[4], parts[5]), // 4 TiB: refused, not attempted
		join("", "argon2id", parts[2], "m=19456,t=1000000,p=1", parts[4], parts[5]),
		join("", "argon2id", parts[2], "m=19456,t=2,p=1,x=1", parts[4], parts[5]),
		join("", "argon2id", parts[2], parts[3], "!!", parts[5]),
		join("", "argon2id", parts[2], parts[3], "", parts[5]),
		join("", "argon2id", parts[2], parts[3], parts[4], ""),
		join("", "argon2id", parts[2], parts[3], parts[4], parts[5][:20]),
		join("", "argon2id", parts[2], parts[3], parts[4], parts[5]+"="),
		join("", "argon2id", parts[2], "m=19456,t=1,p=1", parts[4], parts[5]), // other params: other key
	}
	for _, b := range bad {
		if CheckPassword(b, "pw") {
			t.Errorf("CheckPassword(%q) = true", b)
		}
	}
	if !CheckPassword(h, "pw") {
		t.Fatal("good hash refused")
	}
}

func TestTokens(t *testing.T) {
	tok, hash, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`).MatchString(tok) {
		t.Fatalf("token %q is not 32 bytes base64url unpadded", tok)
	}
	if hash != HashToken(tok) || !ValidID(hash) || len(hash) != 64 {
		t.Fatalf("hash %q", hash)
	}
	// Known answer: SHA-256("abc").
	if got := HashToken("abc"); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Fatalf("HashToken(abc) = %s", got)
	}
	seen := map[string]bool{}
	for range 100 {
		tok, _, _ := NewToken()
		if seen[tok] {
			t.Fatal("duplicate token")
		}
		seen[tok] = true
	}
}

func TestDeviceKeys(t *testing.T) {
	key, hash, err := NewDeviceKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != 43 || hash != HashToken(key) {
		t.Fatalf("key %q hash %q", key, hash)
	}
	if !CheckDeviceKey(hash, key) {
		t.Fatal("right key refused")
	}
	other, _, _ := NewDeviceKey()
	upper := strings.ToUpper(hash)
	for _, c := range []struct{ hash, key string }{
		{hash, other}, {hash, ""}, {hash, key + "x"}, {hash, key[1:]},
		{"", key}, {"zz", key}, {hash[:62], key}, {hash + "00", key},
		{hex.EncodeToString(make([]byte, 32)), key},
	} {
		if CheckDeviceKey(c.hash, c.key) {
			t.Errorf("CheckDeviceKey(%q, %q) = true", c.hash, c.key)
		}
	}
	// Hex decoding is case-insensitive; the stored form is lower case.
	if !CheckDeviceKey(upper, key) {
		t.Error("upper-case hash refused")
	}
}

func TestSecretLen(t *testing.T) {
	for range 100 {
		tok, _, err := NewToken()
		if err != nil {
			t.Fatal(err)
		}
		key, _, err := NewDeviceKey()
		if err != nil {
			t.Fatal(err)
		}
		if len(tok) != SecretLen || len(key) != SecretLen {
			t.Fatalf("token %d bytes, device key %d bytes, SecretLen %d", len(tok), len(key), SecretLen)
		}
	}
}
