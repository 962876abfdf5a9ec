// Package secretfile reads the secrets a node keeps in files (admin keys,
// and the like): one secret per line, so that a file can hold the old and
// the new secret together while it is rotated.
//
// Secrets live in files, not on command lines, because every local user
// can read a process's command line in /proc/<pid>/cmdline.
package secretfile

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// ErrEmpty is matched by the error of a file that holds no secret.
var ErrEmpty = errors.New("secretfile: no secret in file")

// maxSize bounds what is read: a secrets file is a few lines; anything
// much larger is a mistake (a wrong path), not a key list.
const maxSize = 64 << 10

// Lines returns the secrets in the file at path: its lines with spaces
// trimmed, blank lines and lines starting with '#' skipped, in order.
// loose reports a file that group or others may read or write (the
// caller warns: the secret may already be known beyond its owner).
func Lines(path string) (secrets []string, loose bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, false, err
	}
	if !st.Mode().IsRegular() {
		return nil, false, fmt.Errorf("secretfile: %s is not a regular file", path)
	}
	if st.Size() > maxSize {
		return nil, false, fmt.Errorf("secretfile: %s is larger than %d bytes", path, maxSize)
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), maxSize)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		secrets = append(secrets, line)
	}
	if err := sc.Err(); err != nil {
		return nil, false, fmt.Errorf("secretfile: %s: %w", path, err)
	}
	if len(secrets) == 0 {
		return nil, false, fmt.Errorf("%w: %s", ErrEmpty, path)
	}
	return secrets, st.Mode().Perm()&0o077 != 0, nil
}

// LoadOrCreate returns the secrets of the file at path as Lines does, or,
// when the file does not exist, a new random secret (256 bits, base64url)
// written there with mode 0600 and created reported true.
func LoadOrCreate(path string) (secrets []string, loose, created bool, err error) {
	secrets, loose, err = Lines(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return secrets, loose, false, err
	}
	key, err := New()
	if err != nil {
		return nil, false, false, err
	}
	// O_EXCL: two starts racing on one data dir never overwrite each
	// other's secret.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, false, fmt.Errorf("secretfile: %w", err)
	}
	_, werr := f.Write([]byte(key + "\n"))
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, false, false, fmt.Errorf("secretfile: write %s: %w", path, werr)
	}
	return []string{key}, false, true, nil
}

// New returns a random secret: 256 bits, base64url without padding.
func New() (string, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(raw[:]), nil
}

// Contains reports whether b holds any of secrets (empty ones skipped):
// the check tests use on logs and command lines.
func Contains(b []byte, secrets ...string) bool {
	for _, s := range secrets {
		if s != "" && bytes.Contains(b, []byte(s)) {
			return true
		}
	}
	return false
}
