package ws

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fuzzMaxMessage is the message limit of the fuzzed handler: small, so
// that the fuzzer reaches it.
const fuzzMaxMessage = 64

// FuzzStream drives the handler with frames built from the input, over
// a real socket: binary messages (whole or in two fragments), pings,
// text messages and oversized messages in any order. The MQTT side must
// read exactly the binary messages' payloads, concatenated, up to the
// first text message (or up to within one message limit of an oversized
// one), and then the end of the stream; the handler never panics and
// always ends the connection.
func FuzzStream(f *testing.F) {
	f.Add([]byte("\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"), []byte{0x30, 0x09})
	f.Add([]byte("abcdefghijklmnop"), []byte{0x04, 0x11, 0x02, 0x0b, 0x08})
	f.Add([]byte("x"), []byte{0xfc, 0x04})
	f.Add([]byte("hello"), []byte{0x13, 0x03, 0x10})

	// Each iteration's connection reports to its own channel, found by
	// the client's address, so a late result never lands in another.
	var results sync.Map // client address -> chan []byte
	h, err := New(Config{
		Serve: func(nc net.Conn) {
			b, _ := io.ReadAll(io.LimitReader(nc, 1<<20))
			nc.Close()
			if ch, ok := results.Load(nc.RemoteAddr().String()); ok {
				ch.(chan []byte) <- b
			}
		},
		MaxMessageBytes: fuzzMaxMessage,
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		f.Fatal(err)
	}
	srv := httptest.NewServer(h)
	f.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")

	f.Fuzz(func(t *testing.T, data, plan []byte) {
		if len(plan) > 64 {
			plan = plan[:64]
		}
		frames, want, ends := buildFrames(data, plan)
		nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		got := make(chan []byte, 1)
		results.Store(nc.LocalAddr().String(), got)
		defer results.Delete(nc.LocalAddr().String())
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		br := upgrade(t, nc, addr)
		if _, err := nc.Write(frames); err != nil {
			t.Fatalf("writing frames: %v", err)
		}
		nc.(*net.TCPConn).CloseWrite() // the end of the stream, where no frame ends it
		go io.Copy(io.Discard, br)     // pongs and the close frame
		var b []byte
		select {
		case b = <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("the handler did not end the stream")
		}
		switch {
		case ends == endOversized:
			if !bytes.HasPrefix(b, want) || len(b) > len(want)+fuzzMaxMessage {
				t.Fatalf("read %q, want %q then at most %d bytes of the oversized message", b, want, fuzzMaxMessage)
			}
		case !bytes.Equal(b, want):
			t.Fatalf("read %q, want %q", b, want)
		}
	})
}

// How a built stream ends.
const (
	endEOF = iota
	endText
	endOversized
)

// buildFrames makes masked client frames from data, one per plan byte:
// its low two bits choose a binary message, a binary message in two
// fragments, a ping or a text message, its other bits the payload size
// (taken from data, cycled); size 63 means one byte over the limit. It
// returns the frames, the bytes the MQTT side must read, and how the
// stream ends.
func buildFrames(data, plan []byte) (frames, want []byte, ends int) {
	off := 0
	take := func(n int) []byte {
		p := make([]byte, n)
		for i := range p {
			if len(data) > 0 {
				p[i] = data[off%len(data)]
				off++
			}
		}
		return p
	}
	for _, op := range plan {
		n := int(op >> 2)
		if n == 63 {
			n = fuzzMaxMessage + 1
		}
		p := take(n)
		switch op & 3 {
		case 0, 1:
			if n > fuzzMaxMessage {
				frames = appendFrame(frames, true, 2, p)
				return frames, want, endOversized
			}
			if op&3 == 1 && n > 1 {
				frames = appendFrame(frames, false, 2, p[:n/2])
				frames = appendFrame(frames, true, 0, p[n/2:])
			} else {
				frames = appendFrame(frames, true, 2, p)
			}
			want = append(want, p...)
		case 2:
			frames = appendFrame(frames, true, 9, p[:min(n, 125)])
		case 3:
			frames = appendFrame(frames, true, 1, []byte("text"))
			return frames, want, endText
		}
	}
	return frames, want, endEOF
}

// appendFrame appends one masked client frame (RFC 6455 5.2).
func appendFrame(dst []byte, fin bool, opcode byte, payload []byte) []byte {
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	dst = append(dst, b0)
	switch n := len(payload); {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n < 1<<16:
		dst = append(dst, 0x80|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	mask := [4]byte{0x12, 0x34, 0x56, 0x78}
	dst = append(dst, mask[:]...)
	for i, c := range payload {
		dst = append(dst, c^mask[i%4])
	}
	return dst
}

// upgrade sends the opening handshake on nc and reads the 101 answer.
func upgrade(t *testing.T, nc net.Conn, host string) *bufio.Reader {
	t.Helper()
	req := "GET / HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
	if _, err := nc.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %s", resp.Status)
	}
	return br
}
