package store

// Credentials: password hashing, session tokens, device keys.
//
// Passwords are argon2id in PHC string form. Tokens and device keys are
// 256-bit random values, so a plain SHA-256 is a sufficient stored hash
// (nothing to brute-force) and keeps CONNECT and token checks cheap.

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters for new hashes: the OWASP Password Storage Cheat
// Sheet minimum (m=19 MiB, t=2, p=1). About 20-40 ms per login on one core;
// raise them when logins are rare enough. CheckPassword reads the
// parameters from each stored hash, so raising them never breaks old ones.
const (
	argonMemory  = 19456 // KiB
	argonTime    = 2
	argonThreads = 1
	argonSaltLen = 16
	argonKeyLen  = 32
)

// Bounds on parameters accepted from a stored hash, so a corrupt or hostile
// record cannot make CheckPassword allocate gigabytes or spin for minutes.
const (
	maxArgonMemory  = 1 << 20 // KiB (1 GiB)
	maxArgonTime    = 16
	maxArgonThreads = 16
	maxArgonKeyLen  = 128
)

var b64 = base64.RawStdEncoding // PHC strings use standard base64, no padding

// HashPassword returns the argon2id hash of pw in PHC string form,
// $argon2id$v=<version>$m=<KiB>,t=<passes>,p=<threads>$<salt>$<hash>, with
// the parameters above (argonMemory, argonTime, argonThreads) and a fresh
// salt of argonSaltLen bytes.
func HashPassword(pw string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("store: salt: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, argonMemory, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// CheckPassword reports whether pw matches phc (from HashPassword). It
// compares in constant time and returns false on any malformed hash.
func CheckPassword(phc, pw string) bool {
	parts := strings.Split(phc, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return false
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version ||
		parts[2] != fmt.Sprintf("v=%d", version) {
		return false
	}
	var m, t uint32
	var p uint8
	if n, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || n != 3 ||
		fmt.Sprintf("m=%d,t=%d,p=%d", m, t, p) != parts[3] {
		return false
	}
	if m < 8*uint32(p) || m > maxArgonMemory || t < 1 || t > maxArgonTime || p < 1 || p > maxArgonThreads {
		return false
	}
	salt, err := b64.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return false
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil || len(want) < 16 || len(want) > maxArgonKeyLen {
		return false
	}
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// secretBytes is how many random bytes a token or device key carries.
const secretBytes = 32

// SecretLen is the length of every session token and device key NewToken
// and NewDeviceKey issue (secretBytes in base64url without padding: six
// bits a character), so that code which bounds what it hashes can check
// the bound at compile time.
const SecretLen = (8*secretBytes + 5) / 6

// NewToken returns a fresh session token (secretBytes random bytes,
// base64url without padding) and its stored hash, HashToken(token).
func NewToken() (token, tokenHash string, err error) {
	var b [secretBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("store: token: %w", err)
	}
	token = base64.RawURLEncoding.EncodeToString(b[:])
	return token, HashToken(token), nil
}

// HashToken is the hex SHA-256 of a token or device key: what is stored,
// and the Session key.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// NewDeviceKey returns a fresh device key and its stored hash; same shape
// as NewToken.
func NewDeviceKey() (key, keyHash string, err error) {
	return NewToken()
}

// CheckDeviceKey reports whether key hashes to keyHash, in constant time.
func CheckDeviceKey(keyHash, key string) bool {
	want, err := hex.DecodeString(keyHash)
	if err != nil || len(want) != sha256.Size {
		return false
	}
	got := sha256.Sum256([]byte(key))
	return subtle.ConstantTimeCompare(got[:], want) == 1
}
