// Package proxyproto reads the PROXY protocol header (versions 1 and 2)
// that a load balancer such as HAProxy or an AWS Network Load Balancer
// sends first on each connection it opens to a backend, naming the client
// it serves. Read consumes exactly the header, never a byte of what
// follows, so the connection can then be handed to any reader, even one
// that reads the raw socket.
package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Header is what a PROXY header says of a connection.
type Header struct {
	// Version is 1 (text) or 2 (binary).
	Version int
	// Source and Dest are the client's address and the address it
	// connected to, as the proxy saw them. Both are zero when Local.
	Source, Dest netip.AddrPort
	// Local: the header names no client (version 1 UNKNOWN, version 2
	// LOCAL, or a version 2 address family other than TCP over IPv4 or
	// IPv6), as in a proxy's own health check. The connection's own
	// addresses stand.
	Local bool
}

// ErrHeader is wrapped by every error for bytes that are no valid PROXY
// header, as opposed to a read that failed or timed out.
var ErrHeader = errors.New("invalid PROXY protocol header")

type headerError string

func (e headerError) Error() string { return ErrHeader.Error() + ": " + string(e) }
func (e headerError) Unwrap() error { return ErrHeader }

// v2sig starts every version 2 header; a version 1 line starts "PROXY ".
var v2sig = [sigLen]byte{'\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I', 'T', '\n'}

const (
	maxV1  = 107 // the longest version 1 line, CRLF included
	sigLen = 12  // read first: the v2 signature, shorter than any v1 line ("PROXY UNKNOWN\r\n" is 15)
)

// Read reads one PROXY header from c and nothing after it. The caller
// sets c's read deadline: a proxy sends the header at once.
func Read(c net.Conn) (Header, error) {
	var b [maxV1]byte
	if _, err := io.ReadFull(c, b[:sigLen]); err != nil {
		return Header{}, err
	}
	if [sigLen]byte(b[:sigLen]) == v2sig {
		return readV2(c, b[:])
	}
	if !bytes.HasPrefix(b[:sigLen], []byte("PROXY ")) {
		return Header{}, headerError("no PROXY signature")
	}
	n, err := readLine(c, b[:], sigLen)
	if err != nil {
		return Header{}, err
	}
	return parseV1(b[:n])
}

var crlf = []byte("\r\n")

// readLine reads the rest of a version 1 line into b, whose first have
// bytes are read already, and returns the line's length. Where the
// connection lets it peek (Linux sockets), it reads what has arrived in
// one call and consumes only up to the CRLF; elsewhere a byte a call.
func readLine(c net.Conn, b []byte, have int) (int, error) {
	if bytes.Contains(b[:have], crlf) {
		return 0, headerError("version 1 line too short")
	}
	for have < len(b) {
		end := have + 1
		n, ok, err := peek(c, b[have:])
		if ok {
			if err != nil {
				return 0, err
			}
			if n == 0 {
				return 0, io.ErrUnexpectedEOF
			}
			end = have + n
			// A CR read last time may end the line with this LF.
			if i := bytes.Index(b[have-1:end], crlf); i >= 0 {
				end = have - 1 + i + 2
			}
		}
		if _, err := io.ReadFull(c, b[have:end]); err != nil {
			return 0, err
		}
		if b[end-2] == '\r' && b[end-1] == '\n' {
			return end, nil
		}
		have = end
	}
	return 0, headerError("version 1 line over 107 bytes")
}

// parseV1 parses a whole version 1 line, CRLF included.
func parseV1(line []byte) (Header, error) {
	s := string(line[len("PROXY ") : len(line)-2])
	h := Header{Version: 1}
	if strings.HasPrefix(s, "UNKNOWN") {
		h.Local = true // the rest of the line is to be ignored
		return h, nil
	}
	f := strings.Split(s, " ")
	if len(f) != 5 || f[0] != "TCP4" && f[0] != "TCP6" {
		return Header{}, headerError("version 1 line not TCP4, TCP6 or UNKNOWN with four fields")
	}
	src, err1 := v1Addr(f[1], f[3], f[0] == "TCP4")
	dst, err2 := v1Addr(f[2], f[4], f[0] == "TCP4")
	if err := errors.Join(err1, err2); err != nil {
		return Header{}, err
	}
	h.Source, h.Dest = src, dst
	return h, nil
}

func v1Addr(ip, port string, v4 bool) (netip.AddrPort, error) {
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Zone() != "" || a.Is4() != v4 {
		return netip.AddrPort{}, headerError("version 1 address not of its family")
	}
	if port == "" || port[0] == '+' {
		return netip.AddrPort{}, headerError("version 1 port not a number")
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, headerError("version 1 port not a number up to 65535")
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}

// Version 2 commands and address families (with protocol) it reads.
const (
	cmdLocal  = 0x20
	cmdProxy  = 0x21
	tcpOverV4 = 0x11
	tcpOverV6 = 0x21
)

// readV2 reads the rest of a version 2 header, whose signature is read
// into b already.
func readV2(c net.Conn, b []byte) (Header, error) {
	if _, err := io.ReadFull(c, b[sigLen:16]); err != nil {
		return Header{}, err
	}
	cmd, fam, n := b[12], b[13], int(binary.BigEndian.Uint16(b[14:16]))
	if cmd != cmdLocal && cmd != cmdProxy {
		return Header{}, headerError("version 2 with an unknown version or command")
	}
	if fam>>4 > 3 || fam&0xf > 2 {
		return Header{}, headerError("version 2 with an unknown address family or protocol")
	}
	h := Header{Version: 2, Local: true}
	addrLen := 0
	if cmd == cmdProxy {
		switch fam {
		case tcpOverV4:
			addrLen = 12
		case tcpOverV6:
			addrLen = 36
		}
	}
	if n < addrLen {
		return Header{}, headerError("version 2 length shorter than its addresses")
	}
	a := b[16 : 16+addrLen]
	if _, err := io.ReadFull(c, a); err != nil {
		return Header{}, err
	}
	// The rest (TLVs: the proxy's own details) is not used; a length the
	// header gives is read past, bounded by 64 KiB and the deadline.
	if _, err := io.CopyN(io.Discard, c, int64(n-addrLen)); err != nil {
		return Header{}, err
	}
	switch addrLen {
	case 12:
		h.Local = false
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[0:4])), binary.BigEndian.Uint16(a[8:10]))
		h.Dest = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[4:8])), binary.BigEndian.Uint16(a[10:12]))
	case 36:
		h.Local = false
		h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[0:16])), binary.BigEndian.Uint16(a[32:34]))
		h.Dest = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[16:32])), binary.BigEndian.Uint16(a[34:36]))
	}
	return h, nil
}
