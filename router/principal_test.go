package router

import (
	"testing"

	"github.com/pushring/pushring/mqtt/packet"
)

// TestDropPrincipal: a deleted principal's connections close at once (a
// 5.0 client is told 0x87), its persistent sessions and what they held
// are gone (a reconnect finds no session), and it cannot connect again
// until it is made again; other principals are untouched.
func TestDropPrincipal(t *testing.T) {
	transports(t, func(t *testing.T, goroutines bool) {
		e := newEnv(t, func(c *Config) { c.GoroutinePerConn = goroutines })
		v5, _ := connect5(t, e, "alice", "a5", true, packet.Properties{}, 0)
		persistent := connectRaw(t, e, "alice", "a-keep", false)
		persistent.subscribe(1, "/private/alice/#")
		persistent.disconnect()
		persistent.expectClosed()
		bob := connectRaw(t, e, "bob", "b", true)

		e.srv.DropPrincipal("alice")
		v5.expectDisconnect(packet.CodeNotAuthorized)
		if n := len(e.srv.sessionsOf("alice")); n != 0 {
			t.Fatalf("%d sessions of alice left", n)
		}
		again := dialRaw(t, e.addr)
		again.send(connectPacket("alice", "tok-alice", "a-keep", false, 60))
		again.expectConnack(packet.ConnBadCredentials) // 0x04: authenticated, then refused at bind
		bob.expectQuiet()

		e.srv.PrincipalChanged("alice", false) // made again
		back := dialRaw(t, e.addr)
		back.send(connectPacket("alice", "tok-alice", "a-keep", false, 60))
		if present := back.expectConnack(0); present {
			t.Fatal("the deleted principal's persistent session came back")
		}
	})
}

// TestPrincipalChangedDevice: a device whose key changed is disconnected
// and resumes its persistent session with the new key; a user's password
// change closes nothing.
func TestPrincipalChangedDevice(t *testing.T) {
	e := newEnv(t, nil)
	d1 := connectRaw(t, e, "d1", "d1", false)
	alice := connectRaw(t, e, "alice", "a", true)
	e.srv.PrincipalChanged("alice", false)
	e.srv.PrincipalChanged("d1", true)
	d1.expectClosed()
	alice.expectQuiet()
	again := dialRaw(t, e.addr)
	again.send(connectPacket("d1", "tok-d1", "d1", false, 60))
	if present := again.expectConnack(0); !present {
		t.Fatal("the device's persistent session did not survive its key change")
	}
}
