package packet

import (
	"bytes"
	"unicode/utf8"
)

// Decoding: each decoder validates the header flags of its type and the
// whole body, and returns one of the *Error sentinels on any fault. No
// decoder panics on any input, and none keeps a reference to body except
// where its documentation says so (Publish.Topic and Publish.Payload,
// DecodeSuback's codes).
//
// Fixed header flags ([MQTT-2.2.2-2]): PUBREL, SUBSCRIBE and UNSUBSCRIBE
// must carry 0b0010, PUBLISH carries DUP/QoS/RETAIN, every other type 0.

// ValidClientPacketType reports whether a client may send packets of type
// typ (header>>4) on a connection of the given protocol level: CONNECT,
// PUBLISH, the four acks, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT, and
// AUTH in 5.0. Reserved 0 and server-only types (CONNACK, SUBACK, UNSUBACK,
// PINGRESP) are refused: close (5.0: 0x82).
func ValidClientPacketType(typ, level byte) bool {
	switch typ {
	case CONNECT, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT:
		return true
	case AUTH:
		return level == V5
	}
	return false
}

// checkLevel refuses levels the decoders do not implement.
func checkLevel(level byte) error {
	switch level {
	case V31, V311:
		return nil
	case V5:
		return ErrV5NotSupported
	}
	return ErrUnsupportedLevel
}

// DecodeConnect decodes a CONNECT into c (overwriting every field).
//
// Checks: header flags 0; protocol name "MQTT" with level 4, or "MQIsdp"
// with level 3; reserved flag 0; Will QoS and Will Retain 0 without the
// Will flag; Will QoS < 3; in 3.1/3.1.1 no password flag without the
// username flag; client id, Will topic and username valid UTF-8 without
// U+0000; the Will topic a valid topic name; no trailing bytes. An empty
// client id is decoded: the server decides whether to assign one.
//
// Errors with Code 0x84 (ErrUnsupportedLevel for "MQTT" with a level other
// than 4 or 5, or "MQIsdp" with a level other than 3; ErrV5NotSupported for
// level 5) are answered with CONNACK 0x01; c.ProtocolName and
// c.ProtocolLevel are set in that case. Every other error closes the
// connection without CONNACK.
func DecodeConnect(header byte, body []byte, c *Connect) error {
	*c = Connect{}
	if header>>4 != CONNECT {
		return ErrPacketType
	}
	if header&0x0f != 0 {
		return ErrFlags
	}
	name, off, ok := readBinary(body, 0)
	if !ok || off >= len(body) {
		return ErrShort
	}
	level := body[off]
	off++
	switch string(name) {
	case "MQTT":
		c.ProtocolName = "MQTT"
	case "MQIsdp":
		c.ProtocolName = "MQIsdp"
	default:
		return ErrProtocolName
	}
	c.ProtocolLevel = level
	switch {
	case c.ProtocolName == "MQTT" && level == V5:
		return ErrV5NotSupported
	case c.ProtocolName == "MQTT" && level == V311, c.ProtocolName == "MQIsdp" && level == V31:
	default:
		return ErrUnsupportedLevel
	}

	if off+3 > len(body) {
		return ErrShort
	}
	flags := body[off]
	c.KeepAlive = uint16(body[off+1])<<8 | uint16(body[off+2])
	off += 3
	c.CleanSession = flags&0x02 != 0
	c.WillFlag = flags&0x04 != 0
	c.WillQoS = flags >> 3 & 3
	c.WillRetain = flags&0x20 != 0
	c.PasswordFlag = flags&0x40 != 0
	c.UsernameFlag = flags&0x80 != 0
	switch {
	case flags&0x01 != 0: // [MQTT-3.1.2-3]
		return ErrConnectFlags
	case !c.WillFlag && (c.WillQoS != 0 || c.WillRetain): // [MQTT-3.1.2-11], [MQTT-3.1.2-13], [MQTT-3.1.2-15]
		return ErrConnectFlags
	case c.WillQoS == 3: // [MQTT-3.1.2-14]
		return ErrConnectFlags
	case c.PasswordFlag && !c.UsernameFlag: // [MQTT-3.1.2-22]; 5.0 allows it
		return ErrConnectFlags
	}

	var b []byte
	if b, off, ok = readBinary(body, off); !ok {
		return ErrShort
	}
	if !validString(b) {
		return ErrUTF8
	}
	c.ClientID = string(b)

	if c.WillFlag {
		if b, off, ok = readBinary(body, off); !ok {
			return ErrShort
		}
		if err := checkTopicName(b); err != nil {
			return err
		}
		c.WillTopic = string(b)
		if b, off, ok = readBinary(body, off); !ok {
			return ErrShort
		}
		c.WillPayload = bytes.Clone(b) // non-nil, maybe empty
	}
	if c.UsernameFlag {
		if b, off, ok = readBinary(body, off); !ok {
			return ErrShort
		}
		if !validString(b) { // [MQTT-1.5.3-2]: the username too
			return ErrUTF8
		}
		c.Username = string(b)
	}
	if c.PasswordFlag {
		if b, off, ok = readBinary(body, off); !ok {
			return ErrShort
		}
		c.Password = bytes.Clone(b) // non-nil, maybe empty: an empty password is still a password
	}
	if off != len(body) {
		return ErrTrailing
	}
	return nil
}

// DecodePublish decodes a PUBLISH into p without allocating: p.Topic and
// p.Payload alias body (copy them before the Reader is read again).
//
// Checks: QoS < 3 [MQTT-3.3.1-4]; no DUP at QoS 0 [MQTT-3.3.1-2]; the topic
// a valid topic name (non-empty, no wildcards, valid UTF-8 without U+0000,
// at most MaxLevels levels); packet id != 0 at QoS > 0. The payload may be
// empty. The ACL and the retain/QoS policy are the server's.
func DecodePublish(header byte, body []byte, level byte, p *Publish) error {
	if header>>4 != PUBLISH {
		return ErrPacketType
	}
	if err := checkLevel(level); err != nil {
		return err
	}
	qos := header >> 1 & 3
	dup := header&0x08 != 0
	if qos == 3 {
		return ErrQoS
	}
	if qos == 0 && dup {
		return ErrFlags
	}
	topic, off, ok := readBinary(body, 0)
	if !ok {
		return ErrShort
	}
	var id uint16
	if qos > 0 {
		if off+2 > len(body) {
			return ErrShort
		}
		id = uint16(body[off])<<8 | uint16(body[off+1])
		off += 2
		if id == 0 {
			return ErrPacketIDZero
		}
	}
	if err := checkTopicName(topic); err != nil {
		return err
	}
	*p = Publish{
		Dup:      dup,
		QoS:      qos,
		Retain:   header&0x01 != 0,
		Topic:    topic,
		PacketID: id,
		Payload:  body[off:],
	}
	return nil
}

// decodeFilterListHead checks what SUBSCRIBE and UNSUBSCRIBE share: the
// type, flags 0b0010, the level, a non-zero packet id, and at least one
// filter after it. The id is returned when it was read, even with an error.
func decodeFilterListHead(header, typ byte, body []byte, level byte) (uint16, error) {
	if header>>4 != typ {
		return 0, ErrPacketType
	}
	if header&0x0f != 0x02 {
		return 0, ErrFlags
	}
	if err := checkLevel(level); err != nil {
		return 0, err
	}
	id, err := readPacketID(body)
	if err != nil {
		return 0, err
	}
	if len(body) == 2 {
		return id, ErrNoFilters
	}
	return id, nil
}

// DecodeSubscribe decodes a SUBSCRIBE into s. s.Filters is reused: the
// filters are appended to s.Filters[:0]. On error s is left partly filled.
//
// Checks: header flags 0b0010; packet id != 0; at least one filter
// (ErrNoFilters); every filter valid per ValidFilter (ErrFilter, or ErrUTF8);
// every option byte followed by nothing but the next filter, with requested
// QoS < 3 (ErrQoS) and the reserved bits 2–7 zero (ErrSubOptions).
// Whether each filter is allowed (ACL, $share, caps) is the server's call.
func DecodeSubscribe(header byte, body []byte, level byte, s *Subscribe) error {
	s.Filters = s.Filters[:0]
	s.PacketID = 0
	id, err := decodeFilterListHead(header, SUBSCRIBE, body, level)
	s.PacketID = id
	if err != nil {
		return err
	}
	off := 2
	for off < len(body) {
		f, next, ok := readBinary(body, off)
		if !ok || next >= len(body) {
			return ErrShort
		}
		if err := checkFilter(f); err != nil {
			return err
		}
		opts := body[next]
		off = next + 1
		if opts&^0x03 != 0 {
			return ErrSubOptions
		}
		if opts == 3 {
			return ErrQoS
		}
		s.Filters = append(s.Filters, Subscription{Filter: string(f), QoS: opts})
	}
	return nil
}

// DecodeUnsubscribe decodes an UNSUBSCRIBE into u. u.Filters is reused:
// the filters are appended to u.Filters[:0]. On error u is left partly
// filled.
//
// Checks: header flags 0b0010; packet id != 0; at least one filter; every
// filter valid per ValidFilter.
func DecodeUnsubscribe(header byte, body []byte, level byte, u *Unsubscribe) error {
	u.Filters = u.Filters[:0]
	u.PacketID = 0
	id, err := decodeFilterListHead(header, UNSUBSCRIBE, body, level)
	u.PacketID = id
	if err != nil {
		return err
	}
	off := 2
	for off < len(body) {
		f, next, ok := readBinary(body, off)
		if !ok {
			return ErrShort
		}
		if err := checkFilter(f); err != nil {
			return err
		}
		off = next
		u.Filters = append(u.Filters, string(f))
	}
	return nil
}

// DecodeAck decodes PUBACK, PUBREC, PUBREL, PUBCOMP (header checked
// against its type: flags 0, PUBREL 0b0010): the packet id, never 0.
// In 3.1.1 the body is exactly the packet id.
func DecodeAck(header byte, body []byte, level byte) (packetID uint16, err error) {
	switch header >> 4 {
	case PUBACK, PUBREC, PUBCOMP:
		if header&0x0f != 0 {
			return 0, ErrFlags
		}
	case PUBREL:
		if header&0x0f != 0x02 {
			return 0, ErrFlags
		}
	default:
		return 0, ErrPacketType
	}
	if err := checkLevel(level); err != nil {
		return 0, err
	}
	return decodeIDOnly(body)
}

// DecodeEmpty checks PINGREQ and DISCONNECT (3.1.1: flags 0, empty body).
func DecodeEmpty(header byte, body []byte, level byte) error {
	if t := header >> 4; t != PINGREQ && t != DISCONNECT {
		return ErrPacketType
	}
	if header&0x0f != 0 {
		return ErrFlags
	}
	if err := checkLevel(level); err != nil {
		return err
	}
	if len(body) != 0 {
		return ErrTrailing
	}
	return nil
}

// Client side (test clients, the load harness).

// DecodeConnack decodes a CONNACK: the session-present flag and the return
// code. The reserved acknowledge flags 1–7 must be 0.
func DecodeConnack(header byte, body []byte, level byte) (sessionPresent bool, code byte, err error) {
	if header>>4 != CONNACK {
		return false, 0, ErrPacketType
	}
	if header&0x0f != 0 {
		return false, 0, ErrFlags
	}
	if err := checkLevel(level); err != nil {
		return false, 0, err
	}
	switch {
	case len(body) < 2:
		return false, 0, ErrShort
	case len(body) > 2:
		return false, 0, ErrTrailing
	case body[0]&^1 != 0:
		return false, 0, ErrFlags
	}
	return body[0] == 1, body[1], nil
}

// DecodeSuback decodes a SUBACK: its packet id and one return code per
// filter (0, 1, 2 or 0x80). codes aliases body.
func DecodeSuback(header byte, body []byte, level byte) (packetID uint16, codes []byte, err error) {
	if header>>4 != SUBACK {
		return 0, nil, ErrPacketType
	}
	if header&0x0f != 0 {
		return 0, nil, ErrFlags
	}
	if err := checkLevel(level); err != nil {
		return 0, nil, err
	}
	id, err := readPacketID(body)
	if err != nil {
		return 0, nil, err
	}
	codes = body[2:]
	if len(codes) == 0 {
		return 0, nil, ErrShort
	}
	for _, c := range codes {
		if c > 2 && c != SubackFailure {
			return 0, nil, ErrQoS
		}
	}
	return id, codes, nil
}

// DecodeUnsuback decodes an UNSUBACK: its packet id.
func DecodeUnsuback(header byte, body []byte, level byte) (packetID uint16, err error) {
	if header>>4 != UNSUBACK {
		return 0, ErrPacketType
	}
	if header&0x0f != 0 {
		return 0, ErrFlags
	}
	if err := checkLevel(level); err != nil {
		return 0, err
	}
	return decodeIDOnly(body)
}

// Field readers. Every read is bounds-checked; ok == false means the field
// runs past the end of b.

// readBinary reads a 2-byte length and that many bytes starting at off.
// The result aliases b (cap trimmed so appends cannot overwrite b).
func readBinary(b []byte, off int) (v []byte, next int, ok bool) {
	if off < 0 || off+2 > len(b) {
		return nil, off, false
	}
	n := int(b[off])<<8 | int(b[off+1])
	off += 2
	if n > len(b)-off {
		return nil, off, false
	}
	return b[off : off+n : off+n], off + n, true
}

// readPacketID reads the non-zero packet id at the start of b.
func readPacketID(b []byte) (uint16, error) {
	if len(b) < 2 {
		return 0, ErrShort
	}
	id := uint16(b[0])<<8 | uint16(b[1])
	if id == 0 {
		return 0, ErrPacketIDZero
	}
	return id, nil
}

// decodeIDOnly decodes a 3.1.1 body that is a packet id and nothing else.
func decodeIDOnly(b []byte) (uint16, error) {
	id, err := readPacketID(b)
	if err != nil {
		return 0, err
	}
	if len(b) > 2 {
		return 0, ErrTrailing
	}
	return id, nil
}

// validString reports whether b is well-formed UTF-8 without U+0000
// ([MQTT-1.5.3-1], [MQTT-1.5.3-2]). Control characters and noncharacters
// are accepted (the spec lets the server choose; compare bytes exactly).
func validString(b []byte) bool {
	return bytes.IndexByte(b, 0) < 0 && utf8.Valid(b)
}
