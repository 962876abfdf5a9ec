// Package deps pins the modules the packages under construction need, so
// that go.mod stays stable while they are written. Removed once every
// dependency is imported by real code.
package deps

import (
	_ "github.com/cespare/xxhash/v2"
	_ "github.com/eclipse/paho.mqtt.golang"
	_ "github.com/hashicorp/memberlist"
	_ "github.com/mochi-mqtt/server/v2/packets"
	_ "github.com/nats-io/nats.go/jetstream"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "golang.org/x/crypto/argon2"
)
