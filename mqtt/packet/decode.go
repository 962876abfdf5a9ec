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
	case V31, V311, V5:
		return nil
	}
	return ErrUnsupportedLevel
}

// DecodeConnect decodes a CONNECT into c (overwriting every field).
//
// Checks: header flags 0; protocol name "MQTT" with level 4 or 5, or
// "MQIsdp" with level 3; reserved flag 0; Will QoS and Will Retain 0
// without the Will flag; Will QoS < 3; in 3.1/3.1.1 no password flag
// without the username flag; client id, Will topic and username valid
// UTF-8 without U+0000; the Will topic a valid topic name; in 5.0 the
// CONNECT's and the Will's properties (props.go); no trailing bytes. An
// empty client id is decoded: the server decides whether to assign one.
//
// ErrUnsupportedLevel (Code 0x84: "MQTT" with a level other than 4 or 5,
// or "MQIsdp" with a level other than 3) is answered with CONNACK 0x01;
// c.ProtocolName and c.ProtocolLevel are set in that case. Every other
// error closes the connection: without CONNACK before 5.0 is known to be
// the level; on a level 5 CONNECT (c.ProtocolLevel is 5) with a 5.0
// CONNACK carrying the error's Code.
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
	case c.ProtocolName == "MQTT" && (level == V311 || level == V5), c.ProtocolName == "MQIsdp" && level == V31:
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
	case c.PasswordFlag && !c.UsernameFlag && level != V5: // [MQTT-3.1.2-22]; 5.0 allows it
		return ErrConnectFlags
	}
	var b []byte
	var err error
	if level == V5 {
		if b, off, err = readProps(body, off); err != nil {
			return err
		}
		if err = decodeProps(b, propsConnect, &c.Props); err != nil {
			return err
		}
	}

	if b, off, ok = readBinary(body, off); !ok {
		return ErrShort
	}
	if !validString(b) {
		return ErrUTF8
	}
	c.ClientID = string(b)

	if c.WillFlag {
		if level == V5 {
			if b, off, err = readProps(body, off); err != nil {
				return err
			}
			if err = decodeProps(b, propsWill, &c.WillProps); err != nil {
				return err
			}
		}
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
		if c.WillProps.PayloadFormat == 1 && !utf8.Valid(c.WillPayload) {
			return ErrPayloadFormat // a Will said to be UTF-8 that is not (3.1.3.2.3)
		}
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
// empty. In 5.0 the properties (those a client may send, each at most
// once but User Property, values in range: props.go), an empty topic
// only with a Topic Alias, and a UTF-8 payload when the Payload Format
// Indicator says so. The ACL, the retain/QoS policy and the Topic Alias
// maximum are the server's.
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
	*p = Publish{
		Dup:      dup,
		QoS:      qos,
		Retain:   header&0x01 != 0,
		Topic:    topic,
		PacketID: id,
	}
	if level == V5 {
		props, next, err := readProps(body, off)
		if err != nil {
			return err
		}
		off = next
		p.Props = props
		utf8Payload, err := p.readProps()
		if err != nil {
			return err
		}
		if utf8Payload && !utf8.Valid(body[off:]) {
			return ErrPayloadFormat
		}
		if len(topic) == 0 && p.TopicAlias != 0 {
			p.Payload = body[off:]
			return nil
		}
	}
	if err := checkTopicName(topic); err != nil {
		if len(topic) == 0 && level == V5 {
			return ErrNoTopic
		}
		return err
	}
	p.Payload = body[off:]
	return nil
}

// readProps checks p.Props and reads the Topic Alias and the Message
// Expiry Interval out of it; utf8Payload: the Payload Format Indicator
// is 1.
func (p *Publish) readProps() (utf8Payload bool, err error) {
	var seen uint64
	it := propIter{b: p.Props, allowed: propsPublish}
	for {
		ok, err := it.next()
		if err != nil {
			return false, err
		}
		if !ok {
			return utf8Payload, nil
		}
		id := it.id
		if id != PropUser {
			if seen&(1<<id) != 0 {
				return false, ErrPropertyDup
			}
			seen |= 1 << id
		}
		switch id {
		case PropTopicAlias:
			p.TopicAlias = uint16(it.n)
		case PropMessageExpiry:
			p.Expiry, p.HasExpiry = it.n, true
		case PropPayloadFormat:
			utf8Payload = it.n == 1
		}
	}
}

// decodeFilterListHead checks what SUBSCRIBE and UNSUBSCRIBE share: the
// type, flags 0b0010, the level, a non-zero packet id, in 5.0 the
// properties (into props, allowing allowed), and at least one filter after
// them. It returns the offset of the first filter; the id is returned when
// it was read, even with an error.
func decodeFilterListHead(header, typ byte, body []byte, level byte, allowed uint64, props *Properties) (uint16, int, error) {
	if header>>4 != typ {
		return 0, 0, ErrPacketType
	}
	if header&0x0f != 0x02 {
		return 0, 0, ErrFlags
	}
	if err := checkLevel(level); err != nil {
		return 0, 0, err
	}
	id, err := readPacketID(body)
	if err != nil {
		return 0, 0, err
	}
	off := 2
	if level == V5 {
		var block []byte
		if block, off, err = readProps(body, off); err != nil {
			return id, 0, err
		}
		if err = decodeProps(block, allowed, props); err != nil {
			return id, 0, err
		}
	}
	if len(body) == off {
		return id, 0, ErrNoFilters
	}
	return id, off, nil
}

// DecodeSubscribe decodes a SUBSCRIBE into s. s.Filters is reused: the
// filters are appended to s.Filters[:0]. On error s is left partly filled.
//
// Checks: header flags 0b0010; packet id != 0; at least one filter
// (ErrNoFilters); every filter valid per ValidFilter (ErrFilter, or ErrUTF8);
// every option byte followed by nothing but the next filter, with requested
// QoS < 3 (ErrQoS) and the reserved bits zero (ErrSubOptions): bits 2–7 in
// 3.1.1, 6–7 in 5.0, where bits 2–5 are No Local, Retain As Published and
// Retain Handling (not 3: ErrRetainHandling), and No Local is refused on a
// $share filter (ErrSharedNoLocal). Whether each filter is allowed (ACL,
// $share, caps) is the server's call.
func DecodeSubscribe(header byte, body []byte, level byte, s *Subscribe) error {
	s.Filters = s.Filters[:0]
	s.PacketID = 0
	id, off, err := decodeFilterListHead(header, SUBSCRIBE, body, level, propsSubscribe, &s.Props)
	s.PacketID = id
	if err != nil {
		return err
	}
	reserved := byte(0xfc)
	if level == V5 {
		reserved = 0xc0
	}
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
		switch {
		case opts&reserved != 0:
			return ErrSubOptions
		case opts&3 == 3:
			return ErrQoS
		case opts>>4&3 == 3:
			return ErrRetainHandling
		case opts&0x04 != 0 && bytes.HasPrefix(f, []byte("$share/")):
			return ErrSharedNoLocal
		}
		s.Filters = append(s.Filters, Subscription{Filter: string(f), QoS: opts & 3,
			NoLocal: opts&0x04 != 0, RetainAsPublished: opts&0x08 != 0, RetainHandling: opts >> 4 & 3})
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
	id, off, err := decodeFilterListHead(header, UNSUBSCRIBE, body, level, propsUnsubscribe, &u.Props)
	u.PacketID = id
	if err != nil {
		return err
	}
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
// In 3.1.1 the body is exactly the packet id; in 5.0 a reason code and
// properties may follow (DecodeAckCode).
func DecodeAck(header byte, body []byte, level byte) (packetID uint16, err error) {
	packetID, _, err = DecodeAckCode(header, body, level)
	return packetID, err
}

// DecodeAckCode is DecodeAck that also returns the 5.0 reason code (0 when
// omitted, always 0 in 3.1.1), checked against those its type may carry.
// Its properties (a Reason String, User Properties) are checked and
// dropped.
func DecodeAckCode(header byte, body []byte, level byte) (packetID uint16, code byte, err error) {
	switch header >> 4 {
	case PUBACK, PUBREC, PUBCOMP:
		if header&0x0f != 0 {
			return 0, 0, ErrFlags
		}
	case PUBREL:
		if header&0x0f != 0x02 {
			return 0, 0, ErrFlags
		}
	default:
		return 0, 0, ErrPacketType
	}
	if err := checkLevel(level); err != nil {
		return 0, 0, err
	}
	if level != V5 {
		id, err := decodeIDOnly(body)
		return id, 0, err
	}
	id, err := readPacketID(body)
	if err != nil {
		return 0, 0, err
	}
	if len(body) == 2 {
		return id, 0, nil
	}
	code = body[2]
	if !validAckCode(header>>4, code) {
		return 0, 0, ErrReasonCode
	}
	if len(body) == 3 {
		return id, code, nil
	}
	block, off, err := readProps(body, 3)
	if err != nil {
		return 0, 0, err
	}
	if off != len(body) {
		return 0, 0, ErrTrailing
	}
	if err := checkProps(block, propsAck); err != nil {
		return 0, 0, err
	}
	return id, code, nil
}

// validAckCode reports whether code is a reason code packet type typ may
// carry (section 3.4.2.1 and after).
func validAckCode(typ, code byte) bool {
	switch typ {
	case PUBACK, PUBREC:
		switch code {
		case CodeSuccess, CodeNoMatchingSubscribers, CodeUnspecified, CodeImplementationSpecific,
			CodeNotAuthorized, CodeTopicNameInvalid, CodePacketIDInUse, CodeQuotaExceeded, CodePayloadFormatInvalid:
			return true
		}
	case PUBREL, PUBCOMP:
		return code == CodeSuccess || code == CodePacketIDNotFound
	}
	return false
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

// DecodeDisconnect decodes a DISCONNECT into d: in 3.1.1 an empty body
// (d is zeroed); in 5.0 an optional reason code, one DISCONNECT may carry,
// and properties.
func DecodeDisconnect(header byte, body []byte, level byte, d *Disconnect) error {
	*d = Disconnect{}
	if level != V5 {
		return DecodeEmpty(header, body, level)
	}
	if header>>4 != DISCONNECT {
		return ErrPacketType
	}
	if header&0x0f != 0 {
		return ErrFlags
	}
	if len(body) == 0 {
		return nil
	}
	d.Code = body[0]
	if !validDisconnectCode(d.Code) {
		return ErrReasonCode
	}
	if len(body) == 1 {
		return nil
	}
	block, off, err := readProps(body, 1)
	if err != nil {
		return err
	}
	if off != len(body) {
		return ErrTrailing
	}
	return decodeProps(block, propsDisconnect, &d.Props)
}

// validDisconnectCode reports whether a DISCONNECT may carry code, from
// either side (section 3.14.2.1).
func validDisconnectCode(code byte) bool {
	switch code {
	case CodeSuccess, CodeDisconnectWithWill, CodeUnspecified, CodeMalformed, CodeProtocolError,
		CodeImplementationSpecific, CodeNotAuthorized, CodeServerBusy, CodeServerShuttingDown,
		CodeKeepAliveTimeout, CodeSessionTakenOver, CodeTopicFilterInvalid, CodeTopicNameInvalid,
		CodeReceiveMaximumExceeded, CodeTopicAliasInvalid, CodePacketTooLarge, CodeMessageRateTooHigh,
		CodeQuotaExceeded, CodeAdministrativeAction, CodePayloadFormatInvalid, CodeRetainNotSupported,
		CodeQoSNotSupported, CodeUseAnotherServer, CodeServerMoved, CodeSharedSubNotSupported,
		CodeConnectionRateExceeded, CodeMaximumConnectTime, CodeSubIDsNotSupported, CodeWildcardSubNotSupported:
		return true
	}
	return false
}

// Client side (test clients, the load harness).

// DecodeConnack decodes a CONNACK: the session-present flag and the return
// code. The reserved acknowledge flags 1–7 must be 0. A 5.0 CONNACK's
// properties are checked and dropped (DecodeConnackProps keeps them).
func DecodeConnack(header byte, body []byte, level byte) (sessionPresent bool, code byte, err error) {
	var p Properties
	return DecodeConnackProps(header, body, level, &p)
}

// DecodeConnackProps is DecodeConnack that decodes a 5.0 CONNACK's
// properties into props.
func DecodeConnackProps(header byte, body []byte, level byte, props *Properties) (sessionPresent bool, code byte, err error) {
	*props = Properties{}
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
	case len(body) > 2 && level != V5:
		return false, 0, ErrTrailing
	case body[0]&^1 != 0:
		return false, 0, ErrFlags
	}
	if level == V5 {
		block, off, err := readProps(body, 2)
		if err != nil {
			return false, 0, err
		}
		if off != len(body) {
			return false, 0, ErrTrailing
		}
		if err := decodeProps(block, propsConnack, props); err != nil {
			return false, 0, err
		}
	}
	return body[0] == 1, body[1], nil
}

// DecodeSuback decodes a SUBACK: its packet id and one return code per
// filter (0, 1, 2 or 0x80; in 5.0 any SUBACK reason code). codes aliases
// body. A 5.0 SUBACK's properties are checked and dropped.
func DecodeSuback(header byte, body []byte, level byte) (packetID uint16, codes []byte, err error) {
	id, codes, err := decodeAckList(SUBACK, header, body, level)
	if err != nil {
		return 0, nil, err
	}
	for _, c := range codes {
		if !validSubackCode(c, level) {
			return 0, nil, ErrQoS
		}
	}
	return id, codes, nil
}

func validSubackCode(c, level byte) bool {
	switch c {
	case CodeSuccess, CodeGrantedQoS1, CodeGrantedQoS2, CodeUnspecified:
		return true
	case CodeImplementationSpecific, CodeNotAuthorized, CodeTopicFilterInvalid, CodePacketIDInUse,
		CodeQuotaExceeded, CodeSharedSubNotSupported, CodeSubIDsNotSupported, CodeWildcardSubNotSupported:
		return level == V5
	}
	return false
}

// DecodeUnsuback decodes an UNSUBACK: its packet id. A 5.0 UNSUBACK's
// reason codes (DecodeUnsubackCodes) and properties are checked and
// dropped.
func DecodeUnsuback(header byte, body []byte, level byte) (packetID uint16, err error) {
	id, _, err := DecodeUnsubackCodes(header, body, level)
	return id, err
}

// DecodeUnsubackCodes is DecodeUnsuback that returns the 5.0 reason
// codes, one per filter (nil in 3.1.1). codes aliases body.
func DecodeUnsubackCodes(header byte, body []byte, level byte) (packetID uint16, codes []byte, err error) {
	if level != V5 {
		if header>>4 != UNSUBACK {
			return 0, nil, ErrPacketType
		}
		if header&0x0f != 0 {
			return 0, nil, ErrFlags
		}
		if err := checkLevel(level); err != nil {
			return 0, nil, err
		}
		id, err := decodeIDOnly(body)
		return id, nil, err
	}
	id, codes, err := decodeAckList(UNSUBACK, header, body, level)
	if err != nil {
		return 0, nil, err
	}
	for _, c := range codes {
		switch c {
		case CodeSuccess, CodeNoSubscriptionExisted, CodeUnspecified, CodeImplementationSpecific,
			CodeNotAuthorized, CodeTopicFilterInvalid, CodePacketIDInUse:
		default:
			return 0, nil, ErrReasonCode
		}
	}
	return id, codes, nil
}

// decodeAckList reads what SUBACK and UNSUBACK share: the header, the
// packet id, 5.0 properties, and at least one code after them.
func decodeAckList(typ, header byte, body []byte, level byte) (uint16, []byte, error) {
	if header>>4 != typ {
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
	off := 2
	if level == V5 {
		var block []byte
		if block, off, err = readProps(body, 2); err != nil {
			return 0, nil, err
		}
		if err := checkProps(block, propsAck); err != nil {
			return 0, nil, err
		}
	}
	codes := body[off:]
	if len(codes) == 0 {
		return 0, nil, ErrShort
	}
	return id, codes, nil
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
