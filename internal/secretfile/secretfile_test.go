package secretfile

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestLines(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	got, loose, err := Lines(write("two", "# rotated 2026-12\n  new-key  \n\nold-key\n", 0o600))
	if err != nil || loose || !slices.Equal(got, []string{"new-key", "old-key"}) {
		t.Fatalf("Lines = %q, loose %v, %v", got, loose, err)
	}
	if _, loose, _ := Lines(write("open", "k\n", 0o644)); !loose {
		t.Error("a 0644 file is not reported loose")
	}
	if !Loose(filepath.Join(dir, "open")) || Loose(filepath.Join(dir, "two")) || Loose(filepath.Join(dir, "missing")) {
		t.Error("Loose: want true for 0644 only")
	}
	for _, body := range []string{"", "\n \n", "# only a comment\n"} {
		if _, _, err := Lines(write("empty", body, 0o600)); !errors.Is(err, ErrEmpty) {
			t.Errorf("Lines(%q) = %v, want ErrEmpty", body, err)
		}
	}
	if _, _, err := Lines(dir); err == nil {
		t.Error("a directory is read as a secrets file")
	}
	big := make([]byte, maxSize+1)
	for i := range big {
		big[i] = 'a'
	}
	if _, _, err := Lines(write("big", string(big), 0o600)); err == nil {
		t.Error("an oversized file is read")
	}
}

func TestLoadOrCreate(t *testing.T) {
	p := filepath.Join(t.TempDir(), "admin.key")
	first, _, created, err := LoadOrCreate(p)
	if err != nil || !created || len(first) != 1 || len(first[0]) != 43 {
		t.Fatalf("first LoadOrCreate = %q, created %v, %v", first, created, err)
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v; want 0600", st.Mode().Perm(), err)
	}
	again, _, created, err := LoadOrCreate(p)
	if err != nil || created || !slices.Equal(again, first) {
		t.Fatalf("second LoadOrCreate = %q, created %v, %v; want the first secret", again, created, err)
	}
	if _, _, _, err := LoadOrCreate(filepath.Join(t.TempDir(), "missing", "k")); err == nil {
		t.Fatal("a secret is created in a missing directory")
	}
}

func TestContains(t *testing.T) {
	if !Contains([]byte("--admin-key s3cret"), "x", "s3cret") || Contains([]byte("clean"), "", "s3cret") {
		t.Fatal("Contains is wrong")
	}
}
