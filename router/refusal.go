package router

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"

	"github.com/pushring/pushring/mqtt/packet"
)

// Bad input that closes a connection:
// each such close is counted once in pushring_mqtt_refusals_total under
// one of these reasons and logged once, by mqttConn.closed, whichever
// transport read the bytes.
const (
	reasonMalformed = "malformed" // a packet that does not decode (bad remaining length, short or trailing fields, flags, CONNECT fields, UTF-8, filters)
	reasonTooLarge  = "too_large" // remaining length over the packet limit
	reasonProtocol  = "protocol"  // first packet not CONNECT, second CONNECT, forbidden type, packet id 0, wildcard, empty or too deep topic name, too many QoS 1 or 2 ids awaiting an answer
	reasonTimeout   = "timeout"   // CONNECT, packet or keepalive deadline missed
)

// badInputReason classifies why a connection closed: one of the reasons
// above, or "" for a close that is no refusal (DISCONNECT, end of stream,
// a refused CONNECT or auth-topic login, which pushring_mqtt_connects_total
// counts, server shutdown, takeover, revocation, token expiry, a slow
// reader, a failed forward, a panic, which have counters of their own).
//
// A stream that ends inside a packet (io.ErrUnexpectedEOF) or is reset is
// not counted: a dropped network looks the same.
func badInputReason(err error) string {
	if err == nil {
		return ""
	}
	switch {
	case errors.Is(err, errNotConnect), errors.Is(err, errSecondConnect),
		errors.Is(err, errUnexpectedPacket), errors.Is(err, errQoS2Window), errors.Is(err, errQoS1Window):
		return reasonProtocol
	case errors.Is(err, os.ErrDeadlineExceeded):
		return reasonTimeout // event loop, and net.Conn read deadlines
	}
	var pe *packet.Error
	if errors.As(err, &pe) {
		switch pe.Code {
		case packet.CodePacketTooLarge:
			return reasonTooLarge
		case packet.CodeProtocolError, packet.CodeTopicNameInvalid, packet.CodeUnsupportedVersion,
			packet.CodeTopicAliasInvalid, packet.CodeRetainNotSupported, packet.CodeQoSNotSupported,
			packet.CodeSubIDsNotSupported:
			return reasonProtocol
		default: // CodeMalformed, CodeTopicFilterInvalid, CodePayloadFormatInvalid
			return reasonMalformed
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && !errors.Is(err, context.DeadlineExceeded) {
		return reasonTimeout // a net.Conn whose timeout error is not os.ErrDeadlineExceeded
	}
	return ""
}

// countBadInput logs and counts a close for bad input (see
// badInputReason) and reports whether err was one. The log line comes
// before the count, so whoever sees the count can find the line. Only
// the remote address, the principal (once known) and the error, a
// sentinel without packet contents, are logged: never a token.
func (c *mqttConn) countBadInput(err error) bool {
	reason := badInputReason(err)
	if reason == "" {
		return false
	}
	level := slog.LevelWarn
	if reason == reasonTimeout {
		level = slog.LevelInfo // also a client that went away silently
	}
	c.srv.log.Log(context.Background(), level, "mqtt: bad input, connection closed",
		"reason", reason, "err", err.Error(), "remote", c.remoteAddr(), "id", c.id.ID)
	c.srv.m.refusal(reason)
	return true
}
