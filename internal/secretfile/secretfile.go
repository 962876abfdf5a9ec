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
	return secrets, looseMode(st.Mode()), nil
}

// Loose reports whether the file at path may be read or written by group
// or others: a secret in it may already be known beyond its owner, and
// the caller warns. A file that cannot be stat'ed is not loose (reading
// it fails on its own).
func Loose(path string) bool {
	st, err := os.Stat(path)
	return err == nil && looseMode(st.Mode())
}

func looseMode(m os.FileMode) bool { return m.Perm()&0o077 != 0 }

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
	if err := WriteNew(path, []byte(key+"\n")); err != nil {
		return nil, false, false, fmt.Errorf("secretfile: %w", err)
	}
	return []string{key}, false, true, nil
}

// WriteNew writes a new secret file at path, mode 0600. It never
// overwrites (O_EXCL: two starts racing on one data dir keep one secret;
// the error then matches fs.ErrExist), and removes what it wrote if the
// write fails, so a half-written file is never taken for a secret later.
func WriteNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	if err := errors.Join(werr, f.Close()); err != nil {
		os.Remove(path)
		return err
	}
	return nil
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
