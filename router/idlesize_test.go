package router

import (
	"testing"
	"unsafe"
)

// TestIdleStructSizes keeps what every idle connection holds within the
// allocator's size classes it fits now (288, 256 and 112 bytes): a field
// added past them costs every connection the next class, which a memory
// budget per idle connection notices. 512 is a cliff: an object of more
// than 512 bytes that holds pointers carries an 8-byte header, so a
// 576-byte session took the 640-byte class. Rare state goes behind a
// pointer (sessionRare, durable, msgQueue, mqttConn.pub, v5Conn).
func TestIdleStructSizes(t *testing.T) {
	for _, c := range []struct {
		name      string
		size, max uintptr
	}{
		{"session", unsafe.Sizeof(session{}), 288},
		{"mqttConn", unsafe.Sizeof(mqttConn{}), 256},
		{"principalState", unsafe.Sizeof(principalState{}), 112},
	} {
		if c.size > c.max {
			t.Errorf("%s is %d bytes, over its budget of %d", c.name, c.size, c.max)
		}
	}
}
