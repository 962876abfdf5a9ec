package testutil

import (
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
)

// ConfigError checks an error a component returned for a bad Config: it
// must match sentinel, be one line that starts with prefix (the package
// name and ": ", or "" for any) and name field. It returns what is wrong,
// or nil.
func ConfigError(err, sentinel error, prefix, field string) error {
	if !errors.Is(err, sentinel) {
		return fmt.Errorf("%s: %v, want %v", field, err, sentinel)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, field) || strings.Contains(msg, "\n") {
		return fmt.Errorf("%s: error %q does not name the field on one line after %q", field, msg, prefix)
	}
	return nil
}

// CheckDefaults checks a component's Config pattern. filled is
// withDefaults of a Config with only its required fields set, want is
// DefaultConfig with the same fields set: they must be equal, except that
// filled's Logger must be slog.Default() (DefaultConfig leaves it nil)
// and the fields named in skip, which the caller checks itself. The
// validation errors of DefaultConfig and of that zero Config, validDefault
// and validZero, must be nil.
func CheckDefaults[C any](t testing.TB, filled, want C, validDefault, validZero error, skip ...string) {
	t.Helper()
	got := reflect.ValueOf(&filled).Elem()
	w := reflect.ValueOf(&want).Elem()
	if l := got.FieldByName("Logger"); l.IsValid() {
		if l.Interface() != any(slog.Default()) {
			t.Errorf("a nil Logger became %v, want slog.Default()", l.Interface())
		}
		l.SetZero()
	}
	for _, f := range skip {
		got.FieldByName(f).SetZero()
		w.FieldByName(f).SetZero()
	}
	if !reflect.DeepEqual(filled, want) {
		t.Errorf("withDefaults of the zero Config\n got %+v\nwant %+v", filled, want)
	}
	if validDefault != nil {
		t.Errorf("DefaultConfig: %v", validDefault)
	}
	if validZero != nil {
		t.Errorf("the zero Config: %v", validZero)
	}
}
