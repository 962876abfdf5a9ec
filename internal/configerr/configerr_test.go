package configerr

import (
	"errors"
	"testing"
	"time"
)

func TestErrors(t *testing.T) {
	errA, errB := errors.New("a: invalid config"), errors.New("b: invalid config")
	a := Checker{Sentinel: errA, Pkg: "a"}
	inner := a.New("Size must be even (got %d)", 3)
	if inner.Error() != "a: Size must be even (got 3)" || !errors.Is(inner, errA) || errors.Is(inner, errB) {
		t.Errorf("New: %q", inner)
	}
	if a.If(false, "never") != nil || a.If(true, "x %d", 1).Error() != "a: x 1" {
		t.Error("If")
	}
	outer := Wrap(errB, inner)
	if outer.Error() != inner.Error() || !errors.Is(outer, errA) || !errors.Is(outer, errB) {
		t.Errorf("Wrap: %q", outer)
	}
	if Wrap(errB, nil) != nil {
		t.Error("Wrap(nil) is not nil")
	}
	if err := Positive(a, "Wait", -time.Second); err == nil || err.Error() != "a: Wait must be > 0 (got -1s)" {
		t.Errorf("Positive: %v", err)
	}
	if err := Positive(a, "N", 0); err == nil || err.Error() != "a: N must be > 0 (got 0)" {
		t.Errorf("Positive(0): %v", err)
	}
	if Positive(a, "N", 1) != nil {
		t.Error("Positive(1) refused")
	}
	if First(nil, inner, outer) != inner || First(nil, nil) != nil {
		t.Error("First")
	}
}
