package message

import (
	"sync"
	"testing"
	"unsafe"
)

func TestIDSourceUniqueAcrossGoroutinesAndNodes(t *testing.T) {
	a, b := NewIDSource("node-a"), NewIDSource("node-b")
	seen := make(map[uint64]bool)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range []*IDSource{a, a, b, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]uint64, 0, 1000)
			for range 1000 {
				local = append(local, s.Next())
			}
			mu.Lock()
			defer mu.Unlock()
			for _, id := range local {
				if seen[id] {
					t.Errorf("duplicate id %x", id)
				}
				seen[id] = true
			}
		}()
	}
	wg.Wait()
	if a.Next()>>48 == b.Next()>>48 {
		t.Errorf("nodes share an id prefix")
	}
}

func TestFormatID(t *testing.T) {
	for id, want := range map[uint64]string{
		0:                  "0000000000000000",
		1:                  "0000000000000001",
		0xa:                "000000000000000a",
		0xff:               "00000000000000ff",
		1 << 48:            "0001000000000000",
		0x0123456789abcdef: "0123456789abcdef",
		0xfedcba9876543210: "fedcba9876543210",
		^uint64(0):         "ffffffffffffffff",
	} {
		if got := FormatID(id); got != want {
			t.Errorf("FormatID(%x) = %q, want %q", id, got, want)
		}
	}
	// The HTTP API formats every accepted message's id: the string is its
	// one allocation.
	var sink string
	if a := testing.AllocsPerRun(100, func() { sink = FormatID(0x0123456789abcdef) }); a > 1 {
		t.Errorf("FormatID: %v allocations, want 1", a)
	}
	_ = sink
}

func TestKindString(t *testing.T) {
	if Direct.String() != "direct" || Group.String() != "group" || Kind(9).String() != "kind(9)" {
		t.Fatal(Direct.String(), Group.String(), Kind(9).String())
	}
}

// Seq must not make every Message larger than it needs to be: the only
// padding is the word Kind and QoS share.
func TestMessageSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("sizes pinned for 64-bit platforms")
	}
	if n := unsafe.Sizeof(Message{}); n != 112 {
		t.Errorf("unsafe.Sizeof(Message{}) = %d, want 112", n)
	}
}
