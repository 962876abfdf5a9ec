package packet

import "slices"

// Encoding: each Append* appends one whole packet to dst and returns the
// extended slice. An encoder grows dst at most once and does not allocate
// when dst has the capacity. Encoders trust their caller (the server):
// they do not validate topics or reason codes. A packet that cannot be
// encoded at all (a string over MaxStringLen bytes, a body over
// MaxRemainingLength, QoS 3) is not appended: dst comes back unchanged.
//
// Encode once, write many (the fan-out path): AppendPublish the message once
// with packet id 0, then for each receiving QoS>0 connection append those
// bytes to its write buffer and patch the copy with SetPacketID (or with
// the offset from PublishIDOffset, computed once). Never patch the shared
// bytes themselves.

// AppendConnack appends a CONNACK (3.1.1): session present flag and return code.
func AppendConnack(dst []byte, sessionPresent bool, code byte) []byte {
	var sp byte
	if sessionPresent {
		sp = 1
	}
	return append(dst, CONNACK<<4, 2, sp, code)
}

// AppendSuback appends a SUBACK with one return code per filter, in the
// order of the SUBSCRIBE (0, 1, 2 granted QoS, or SubackFailure).
func AppendSuback(dst []byte, packetID uint16, codes []byte) []byte {
	rl := 2 + len(codes)
	if rl > MaxRemainingLength {
		return dst
	}
	dst = slices.Grow(dst, 1+varintLen(rl)+rl)
	dst = append(dst, SUBACK<<4)
	dst = appendVarint(dst, rl)
	dst = append(dst, byte(packetID>>8), byte(packetID))
	return append(dst, codes...)
}

// AppendUnsuback appends an UNSUBACK (3.1.1).
func AppendUnsuback(dst []byte, packetID uint16) []byte {
	return append(dst, UNSUBACK<<4, 2, byte(packetID>>8), byte(packetID))
}

// AppendAck appends a PUBACK, PUBREC, PUBREL or PUBCOMP (typ), with the
// flags its type requires (PUBREL 0b0010). Another typ appends nothing.
func AppendAck(dst []byte, typ byte, packetID uint16) []byte {
	var h byte
	switch typ {
	case PUBACK, PUBREC, PUBCOMP:
		h = typ << 4
	case PUBREL:
		h = typ<<4 | 0x02
	default:
		return dst
	}
	return append(dst, h, 2, byte(packetID>>8), byte(packetID))
}

// AppendPingresp appends a PINGRESP.
func AppendPingresp(dst []byte) []byte { return append(dst, PINGRESP<<4, 0) }

// AppendPublish appends a PUBLISH whose topic is the concatenation of
// topicParts (so "/private/"+id+"/group/"+gid needs no allocation: the
// variadic slice does not escape and lives on the caller's stack).
// packetID is written only when qos > 0 (0 is written as given, to be
// patched with SetPacketID); dup is ignored at QoS 0 [MQTT-3.3.1-2].
// The topic is not validated. PublishLen gives the encoded size.
func AppendPublish(dst []byte, qos byte, dup, retain bool, packetID uint16, payload []byte, topicParts ...string) []byte {
	tlen := 0
	for _, p := range topicParts {
		tlen += len(p)
	}
	rl := publishRemaining(qos, tlen, len(payload))
	if rl < 0 {
		return dst
	}
	h := PUBLISH<<4 | qos<<1
	if dup && qos > 0 {
		h |= 0x08
	}
	if retain {
		h |= 0x01
	}
	dst = slices.Grow(dst, 1+varintLen(rl)+rl)
	dst = append(dst, h)
	dst = appendVarint(dst, rl)
	dst = append(dst, byte(tlen>>8), byte(tlen))
	for _, p := range topicParts {
		dst = append(dst, p...)
	}
	if qos > 0 {
		dst = append(dst, byte(packetID>>8), byte(packetID))
	}
	return append(dst, payload...)
}

// PublishLen returns the size in bytes of the PUBLISH that AppendPublish
// would append, or -1 if it cannot be encoded. Compare it with a client's
// maximum packet size before queueing.
func PublishLen(qos byte, payloadLen int, topicParts ...string) int {
	tlen := 0
	for _, p := range topicParts {
		tlen += len(p)
	}
	rl := publishRemaining(qos, tlen, payloadLen)
	if rl < 0 {
		return -1
	}
	return 1 + varintLen(rl) + rl
}

func publishRemaining(qos byte, tlen, plen int) int {
	if qos > 2 || tlen > MaxStringLen || plen < 0 || plen > MaxRemainingLength {
		return -1
	}
	rl := 2 + tlen + plen
	if qos > 0 {
		rl += 2
	}
	if rl > MaxRemainingLength {
		return -1
	}
	return rl
}

// PublishIDOffset returns the offset of the packet id in pkt, an encoded
// QoS 1 or 2 PUBLISH (fixed header included), or -1 if pkt is not one.
// The offset is the same for every copy of pkt.
func PublishIDOffset(pkt []byte) int {
	if len(pkt) == 0 || pkt[0]>>4 != PUBLISH || pkt[0]>>1&3 == 0 || pkt[0]>>1&3 == 3 {
		return -1
	}
	hl, rl, err := parseFixedHeader(pkt)
	if err != nil || hl == 0 || hl+rl > len(pkt) {
		return -1
	}
	_, off, ok := readBinary(pkt[:hl+rl], hl)
	if !ok || off+2 > hl+rl {
		return -1
	}
	return off
}

// SetPacketID writes id into pkt, an encoded QoS 1 or 2 PUBLISH, and
// reports whether pkt was one (if not, pkt is unchanged).
func SetPacketID(pkt []byte, id uint16) bool {
	off := PublishIDOffset(pkt)
	if off < 0 {
		return false
	}
	pkt[off], pkt[off+1] = byte(id>>8), byte(id)
	return true
}

// SetDup sets the DUP flag of pkt, an encoded QoS 1 or 2 PUBLISH being
// retransmitted, and reports whether pkt was one.
func SetDup(pkt []byte) bool {
	if PublishIDOffset(pkt) < 0 {
		return false
	}
	pkt[0] |= 0x08
	return true
}

// Client side (test clients, the load harness).

// AppendConnect appends a CONNECT built from c. ProtocolLevel 0 means 4;
// an empty ProtocolName means "MQIsdp" for level 3 and "MQTT" otherwise.
// A flag is set if its Flag field is set or its value is non-empty. For
// level 5 the CONNECT and Will properties are written empty.
func AppendConnect(dst []byte, c *Connect) []byte {
	level := c.ProtocolLevel
	if level == 0 {
		level = V311
	}
	name := c.ProtocolName
	if name == "" {
		name = "MQTT"
		if level == V31 {
			name = "MQIsdp"
		}
	}
	will := c.WillFlag || c.WillTopic != ""
	user := c.UsernameFlag || c.Username != ""
	pass := c.PasswordFlag || len(c.Password) > 0

	flags := c.WillQoS & 3 << 3
	if c.CleanSession {
		flags |= 0x02
	}
	if will {
		flags |= 0x04
	}
	if c.WillRetain {
		flags |= 0x20
	}
	if pass {
		flags |= 0x40
	}
	if user {
		flags |= 0x80
	}

	fields := [...][]byte{5: nil} // protocol name, client id, will topic, will payload, username, password
	n := 0
	add := func(b []byte) { fields[n] = b; n++ }
	add([]byte(name))
	add([]byte(c.ClientID))
	if will {
		add([]byte(c.WillTopic))
		add(c.WillPayload)
	}
	if user {
		add([]byte(c.Username))
	}
	if pass {
		add(c.Password)
	}
	rl := 4 // level, flags, keep alive
	if level == V5 {
		rl += 1 // property length 0
		if will {
			rl += 1 // will property length 0
		}
	}
	for _, f := range fields[:n] {
		if len(f) > MaxStringLen {
			return dst
		}
		rl += 2 + len(f)
	}
	dst = slices.Grow(dst, 1+varintLen(rl)+rl)
	dst = append(dst, CONNECT<<4)
	dst = appendVarint(dst, rl)
	dst = appendBinary(dst, fields[0])
	dst = append(dst, level, flags, byte(c.KeepAlive>>8), byte(c.KeepAlive))
	if level == V5 {
		dst = append(dst, 0)
	}
	dst = appendBinary(dst, fields[1])
	for i, f := range fields[2:n] {
		if i == 0 && will && level == V5 {
			dst = append(dst, 0)
		}
		dst = appendBinary(dst, f)
	}
	return dst
}

// AppendSubscribe appends a SUBSCRIBE (3.1.1) of s.Filters.
func AppendSubscribe(dst []byte, s *Subscribe) []byte {
	rl := 2
	for _, f := range s.Filters {
		if len(f.Filter) > MaxStringLen {
			return dst
		}
		rl += 2 + len(f.Filter) + 1
	}
	if rl > MaxRemainingLength {
		return dst
	}
	dst = slices.Grow(dst, 1+varintLen(rl)+rl)
	dst = append(dst, SUBSCRIBE<<4|0x02)
	dst = appendVarint(dst, rl)
	dst = append(dst, byte(s.PacketID>>8), byte(s.PacketID))
	for _, f := range s.Filters {
		dst = appendString(dst, f.Filter)
		dst = append(dst, f.QoS)
	}
	return dst
}

// AppendUnsubscribe appends an UNSUBSCRIBE (3.1.1) of u.Filters.
func AppendUnsubscribe(dst []byte, u *Unsubscribe) []byte {
	rl := 2
	for _, f := range u.Filters {
		if len(f) > MaxStringLen {
			return dst
		}
		rl += 2 + len(f)
	}
	if rl > MaxRemainingLength {
		return dst
	}
	dst = slices.Grow(dst, 1+varintLen(rl)+rl)
	dst = append(dst, UNSUBSCRIBE<<4|0x02)
	dst = appendVarint(dst, rl)
	dst = append(dst, byte(u.PacketID>>8), byte(u.PacketID))
	for _, f := range u.Filters {
		dst = appendString(dst, f)
	}
	return dst
}

// AppendPingreq appends a PINGREQ.
func AppendPingreq(dst []byte) []byte { return append(dst, PINGREQ<<4, 0) }

// AppendDisconnect appends a DISCONNECT (3.1.1).
func AppendDisconnect(dst []byte) []byte { return append(dst, DISCONNECT<<4, 0) }

// appendVarint appends n (0 <= n <= MaxRemainingLength) as a Variable Byte
// Integer.
func appendVarint(dst []byte, n int) []byte {
	for n > 0x7f {
		dst = append(dst, byte(n)|0x80)
		n >>= 7
	}
	return append(dst, byte(n))
}

func varintLen(n int) int {
	switch {
	case n < 1<<7:
		return 1
	case n < 1<<14:
		return 2
	case n < 1<<21:
		return 3
	}
	return 4
}

func appendBinary(dst, b []byte) []byte {
	dst = append(dst, byte(len(b)>>8), byte(len(b)))
	return append(dst, b...)
}

func appendString(dst []byte, s string) []byte {
	dst = append(dst, byte(len(s)>>8), byte(len(s)))
	return append(dst, s...)
}
