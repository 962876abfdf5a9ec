package store

import (
	"errors"
	"testing"
	"time"
)

func TestMemoryMQTTContract(t *testing.T) {
	runMQTTContract(t, func(t *testing.T, expiry time.Duration) *mqttFixture {
		m := NewMemory()
		m.SetMQTTExpiry(expiry)
		t.Cleanup(func() { m.Close() })
		return &mqttFixture{St: m, Peer: func(*testing.T) MQTTSessions { return m }}
	})
}

func TestMemoryMQTTUnavailable(t *testing.T) {
	m := NewMemory()
	ctx := ctxT(t)
	_, _, c, err := m.ClaimMQTT(ctx, "alice", "phone", "n1", false, 0)
	if err != nil {
		t.Fatal(err)
	}
	m.SetUnavailable(true)
	if _, _, _, err := m.ClaimMQTT(ctx, "alice", "phone", "n1", false, 0); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("ClaimMQTT: %v", err)
	}
	if err := m.SaveMQTTPos(ctx, "alice", "phone", c.Gen, 3); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("SaveMQTTPos: %v", err)
	}
	m.SetUnavailable(false)
	m.Close()
	if err := m.WatchMQTTClaims(ctx, func(string, string, string, uint64) {}, nil); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("WatchMQTTClaims after Close: %v", err)
	}
}
