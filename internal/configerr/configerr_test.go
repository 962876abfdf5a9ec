package configerr

import (
	"errors"
	"testing"
	"time"
)

func TestErrors(t *testing.T) {
	errA, errB := errors.New("a: invalid config"), errors.New("b: invalid config")
	inner := New(errA, "a", "Size must be even (got %d)", 3)
	if inner.Error() != "a: Size must be even (got 3)" || !errors.Is(inner, errA) {
		t.Errorf("New: %q", inner)
	}
	outer := Wrap(errB, inner)
	if outer.Error() != inner.Error() || !errors.Is(outer, errA) || !errors.Is(outer, errB) {
		t.Errorf("Wrap: %q", outer)
	}
	if Wrap(errB, nil) != nil {
		t.Error("Wrap(nil) is not nil")
	}
	if err := Positive(errA, "a", "Wait", -time.Second); err == nil || err.Error() != "a: Wait must be > 0 (got -1s)" {
		t.Errorf("Positive: %v", err)
	}
	if Positive(errA, "a", "N", 1) != nil {
		t.Error("Positive(1) refused")
	}
	if First(nil, inner, outer) != inner || First(nil, nil) != nil {
		t.Error("First")
	}
}
