package store

import (
	"testing"
	"time"
)

func TestKVMQTTContract(t *testing.T) {
	runMQTTContract(t, func(t *testing.T, expiry time.Duration) *mqttFixture {
		n := startNATS(t)
		cfg := KVConfig{Timeout: 5 * time.Second, MQTTSessionExpiry: expiry}
		return &mqttFixture{
			St:   n.openKV(t, cfg),
			Peer: func(t *testing.T) MQTTSessions { return n.openKV(t, cfg) },
		}
	})
}
