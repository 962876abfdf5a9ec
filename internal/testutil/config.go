package testutil

import (
	"errors"
	"fmt"
	"strings"
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
