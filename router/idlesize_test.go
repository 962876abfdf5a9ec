package router

import (
	"testing"
	"unsafe"
)

// TestIdleStructSizes keeps what every idle connection holds within the
// allocator's size classes it fits now (576 and 320 bytes): a field
// added past them costs every connection the next class (64 or 32 bytes
// more), which a memory budget per idle connection notices. Rare state
// goes behind a pointer (sessionRare, mqttConn.pub, v5Conn).
func TestIdleStructSizes(t *testing.T) {
	for _, c := range []struct {
		name      string
		size, max uintptr
	}{
		{"session", unsafe.Sizeof(session{}), 576},
		{"mqttConn", unsafe.Sizeof(mqttConn{}), 320},
	} {
		if c.size > c.max {
			t.Errorf("%s is %d bytes, over its budget of %d", c.name, c.size, c.max)
		}
	}
}
