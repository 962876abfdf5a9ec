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
	h, ok := ackHeader(typ)
	if !ok {
		return dst
	}
	return append(dst, h, 2, byte(packetID>>8), byte(packetID))
}

// ackHeader is the first byte of an ack of type typ.
func ackHeader(typ byte) (byte, bool) {
	switch typ {
	case PUBACK, PUBREC, PUBCOMP:
		return typ << 4, true
	case PUBREL:
		return typ<<4 | 0x02, true
	}
	return 0, false
}

// AppendPingresp appends a PINGRESP.
func AppendPingresp(dst []byte) []byte { return append(dst, PINGRESP<<4, 0) }

// AppendConnackV5 appends a 5.0 CONNACK: session present, reason code and
// properties (nil: none).
func AppendConnackV5(dst []byte, sessionPresent bool, code byte, props *Properties) []byte {
	pl := propsLen(props)
	rl := 2 + varintLen(pl) + pl
	if rl > MaxRemainingLength {
		return dst
	}
	var sp byte
	if sessionPresent {
		sp = 1
	}
	dst = slices.Grow(dst, 1+varintLen(rl)+rl)
	dst = append(dst, CONNACK<<4)
	dst = appendVarint(dst, rl)
	dst = append(dst, sp, code)
	return appendProps(dst, props, pl)
}

// AppendAckV5 appends a 5.0 PUBACK, PUBREC, PUBREL or PUBCOMP with a
// reason code and, if not empty, a Reason String, in the shortest form
// that says it (success without a reason is the 3.1.1 form).
func AppendAckV5(dst []byte, typ byte, packetID uint16, code byte, reason string) []byte {
	h, ok := ackHeader(typ)
	switch {
	case !ok || len(reason) > MaxStringLen:
		return dst
	case reason == "" && code == CodeSuccess:
		return append(dst, h, 2, byte(packetID>>8), byte(packetID))
	case reason == "":
		return append(dst, h, 3, byte(packetID>>8), byte(packetID), code)
	}
	props := Properties{ReasonString: reason}
	props.Set(PropReasonString)
	pl := propsLen(&props)
	rl := 3 + varintLen(pl) + pl
	dst = slices.Grow(dst, 1+varintLen(rl)+rl)
	dst = append(dst, h)
	dst = appendVarint(dst, rl)
	dst = append(dst, byte(packetID>>8), byte(packetID), code)
	return appendProps(dst, &props, pl)
}

// AppendSubackV5 appends a 5.0 SUBACK: one reason code per filter and,
// if not empty, a Reason String.
func AppendSubackV5(dst []byte, packetID uint16, codes []byte, reason string) []byte {
	return appendAckListV5(dst, SUBACK<<4, packetID, codes, reason)
}

// AppendUnsubackV5 appends a 5.0 UNSUBACK: one reason code per filter
// and, if not empty, a Reason String.
func AppendUnsubackV5(dst []byte, packetID uint16, codes []byte, reason string) []byte {
	return appendAckListV5(dst, UNSUBACK<<4, packetID, codes, reason)
}

func appendAckListV5(dst []byte, header byte, packetID uint16, codes []byte, reason string) []byte {
	var props Properties
	if reason != "" {
		props.ReasonString = reason
		props.Set(PropReasonString)
	}
	pl := propsLen(&props)
	rl := 2 + varintLen(pl) + pl + len(codes)
	if rl > MaxRemainingLength || len(reason) > MaxStringLen {
		return dst
	}
	dst = slices.Grow(dst, 1+varintLen(rl)+rl)
	dst = append(dst, header)
	dst = appendVarint(dst, rl)
	dst = append(dst, byte(packetID>>8), byte(packetID))
	dst = appendProps(dst, &props, pl)
	return append(dst, codes...)
}

// AppendDisconnectV5 appends a 5.0 DISCONNECT with a reason code and
// properties (nil: none), in the shortest form that says it.
func AppendDisconnectV5(dst []byte, code byte, props *Properties) []byte {
	pl := propsLen(props)
	switch {
	case pl == 0 && code == CodeSuccess:
		return append(dst, DISCONNECT<<4, 0)
	case pl == 0:
		return append(dst, DISCONNECT<<4, 1, code)
	}
	rl := 1 + varintLen(pl) + pl
	if rl > MaxRemainingLength {
		return dst
	}
	dst = slices.Grow(dst, 1+varintLen(rl)+rl)
	dst = append(dst, DISCONNECT<<4)
	dst = appendVarint(dst, rl)
	dst = append(dst, code)
	return appendProps(dst, props, pl)
}

// PublishProps are the properties of a 5.0 PUBLISH being encoded: the
// Message Expiry Interval (when HasExpiry), a Topic Alias (when not 0),
// then Raw, a block of other properties (from ForwardProps, or a decoded
// Publish.Props as it came).
type PublishProps struct {
	Expiry     uint32
	HasExpiry  bool
	TopicAlias uint16
	Raw        []byte
}

func (pp *PublishProps) len() int {
	if pp == nil {
		return -1
	}
	n := len(pp.Raw)
	if pp.HasExpiry {
		n += 5
	}
	if pp.TopicAlias != 0 {
		n += 3
	}
	return n
}

// AppendPublishV5 is AppendPublish for a 5.0 connection, with the
// properties pp. A nil pp appends a 3.1.1 PUBLISH: AppendPublish is
// AppendPublishV5 with pp nil.
func AppendPublishV5(dst []byte, qos byte, dup, retain bool, packetID uint16, pp *PublishProps, payload []byte, topicParts ...string) []byte {
	tlen := 0
	for _, p := range topicParts {
		tlen += len(p)
	}
	pl := pp.len()
	rl := publishRemaining(qos, tlen, len(payload), pl)
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
	if pl >= 0 {
		dst = appendVarint(dst, pl)
		if pp.HasExpiry {
			e := pp.Expiry
			dst = append(dst, PropMessageExpiry, byte(e>>24), byte(e>>16), byte(e>>8), byte(e))
		}
		if pp.TopicAlias != 0 {
			dst = append(dst, PropTopicAlias, byte(pp.TopicAlias>>8), byte(pp.TopicAlias))
		}
		dst = append(dst, pp.Raw...)
	}
	return append(dst, payload...)
}

// AppendPublish appends a PUBLISH whose topic is the concatenation of
// topicParts (so "/private/"+id+"/group/"+gid needs no allocation: the
// variadic slice does not escape and lives on the caller's stack).
// packetID is written only when qos > 0 (0 is written as given, to be
// patched with SetPacketID); dup is ignored at QoS 0 [MQTT-3.3.1-2].
// The topic is not validated. PublishLen gives the encoded size.
func AppendPublish(dst []byte, qos byte, dup, retain bool, packetID uint16, payload []byte, topicParts ...string) []byte {
	return AppendPublishV5(dst, qos, dup, retain, packetID, nil, payload, topicParts...)
}

// PublishLen returns the size in bytes of the PUBLISH that
// AppendPublishV5 would append with pp (nil: a 3.1.1 one), or -1 if it
// cannot be encoded. Compare it with a client's maximum packet size
// before queueing.
func PublishLen(qos byte, pp *PublishProps, payloadLen int, topicParts ...string) int {
	tlen := 0
	for _, p := range topicParts {
		tlen += len(p)
	}
	rl := publishRemaining(qos, tlen, payloadLen, pp.len())
	if rl < 0 {
		return -1
	}
	return 1 + varintLen(rl) + rl
}

// publishRemaining is the Remaining Length of a PUBLISH, or -1; pl is the
// property block's length, -1 for none (3.1.1).
func publishRemaining(qos byte, tlen, plen, pl int) int {
	if qos > 2 || tlen > MaxStringLen || plen < 0 || plen > MaxRemainingLength || pl > MaxRemainingLength {
		return -1
	}
	rl := 2 + tlen + plen
	if qos > 0 {
		rl += 2
	}
	if pl >= 0 {
		rl += varintLen(pl) + pl
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
// level 5 c.Props and c.WillProps are written.
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
	pl, wl := propsLen(&c.Props), propsLen(&c.WillProps)
	if level == V5 {
		rl += varintLen(pl) + pl
		if will {
			rl += varintLen(wl) + wl
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
		dst = appendProps(dst, &c.Props, pl)
	}
	dst = appendBinary(dst, fields[1])
	for i, f := range fields[2:n] {
		if i == 0 && will && level == V5 {
			dst = appendProps(dst, &c.WillProps, wl)
		}
		dst = appendBinary(dst, f)
	}
	return dst
}

// AppendSubscribe appends a SUBSCRIBE (3.1.1) of s.Filters.
func AppendSubscribe(dst []byte, s *Subscribe) []byte { return appendSubscribe(dst, s, V311) }

// AppendSubscribeV5 appends a 5.0 SUBSCRIBE of s.Filters, their options
// and s.Props.
func AppendSubscribeV5(dst []byte, s *Subscribe) []byte { return appendSubscribe(dst, s, V5) }

func appendSubscribe(dst []byte, s *Subscribe, level byte) []byte {
	rl, pl := 2, 0
	if level == V5 {
		pl = propsLen(&s.Props)
		rl += varintLen(pl) + pl
	}
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
	if level == V5 {
		dst = appendProps(dst, &s.Props, pl)
	}
	for _, f := range s.Filters {
		dst = appendString(dst, f.Filter)
		opts := f.QoS | f.RetainHandling<<4
		if f.NoLocal {
			opts |= 0x04
		}
		if f.RetainAsPublished {
			opts |= 0x08
		}
		dst = append(dst, opts)
	}
	return dst
}

// AppendUnsubscribe appends an UNSUBSCRIBE (3.1.1) of u.Filters.
func AppendUnsubscribe(dst []byte, u *Unsubscribe) []byte { return appendUnsubscribe(dst, u, V311) }

// AppendUnsubscribeV5 appends a 5.0 UNSUBSCRIBE of u.Filters and u.Props.
func AppendUnsubscribeV5(dst []byte, u *Unsubscribe) []byte { return appendUnsubscribe(dst, u, V5) }

func appendUnsubscribe(dst []byte, u *Unsubscribe, level byte) []byte {
	rl, pl := 2, 0
	if level == V5 {
		pl = propsLen(&u.Props)
		rl += varintLen(pl) + pl
	}
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
	if level == V5 {
		dst = appendProps(dst, &u.Props, pl)
	}
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
