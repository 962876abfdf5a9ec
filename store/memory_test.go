package store

import (
	"context"
	"errors"
	"testing"
)

// nopClose lets a second handle share one Memory without closing it.
type nopClose struct{ *Memory }

func (nopClose) Close() error { return nil }

func TestMemoryContract(t *testing.T) {
	runContract(t, func(t *testing.T) *fixture {
		m := NewMemory()
		t.Cleanup(func() { m.Close() })
		return &fixture{
			St:   m,
			Peer: func(t *testing.T) Store { return nopClose{m} },
		}
	})
}

func TestMemoryUnavailable(t *testing.T) {
	m := NewMemory()
	ctx := context.Background()
	m.SetUnavailable(true)
	if _, err := m.Principal(ctx, "a"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v", err)
	}
	m.SetUnavailable(false)
	if _, err := m.Principal(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("got %v", err)
	}
	m.Close()
	if err := m.Watch(ctx, func(Event) {}, nil); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Watch after Close: %v", err)
	}
}
