package packet

import "slices"

// MQTT 5.0 properties (section 2.2.2): a Variable Byte Integer length,
// then (identifier, value) pairs. Each packet type allows its own set of
// identifiers; an identifier outside that set, unknown or of the wrong
// packet, makes the packet malformed (0x81), and a property other than
// User Property given twice is a protocol error (0x82).

// Property identifiers.
const (
	PropPayloadFormat        byte = 0x01 // byte: 0 unspecified bytes, 1 UTF-8
	PropMessageExpiry        byte = 0x02 // four-byte integer, seconds
	PropContentType          byte = 0x03 // string
	PropResponseTopic        byte = 0x08 // string, a topic name
	PropCorrelationData      byte = 0x09 // binary
	PropSubscriptionID       byte = 0x0B // variable byte integer, 1..268435455
	PropSessionExpiry        byte = 0x11 // four-byte integer, seconds
	PropAssignedClientID     byte = 0x12 // string
	PropServerKeepAlive      byte = 0x13 // two-byte integer, seconds
	PropAuthMethod           byte = 0x15 // string
	PropAuthData             byte = 0x16 // binary
	PropRequestProblemInfo   byte = 0x17 // byte 0 or 1
	PropWillDelay            byte = 0x18 // four-byte integer, seconds
	PropRequestResponseInfo  byte = 0x19 // byte 0 or 1
	PropResponseInfo         byte = 0x1A // string
	PropServerReference      byte = 0x1C // string
	PropReasonString         byte = 0x1F // string
	PropReceiveMaximum       byte = 0x21 // two-byte integer, not 0
	PropTopicAliasMaximum    byte = 0x22 // two-byte integer
	PropTopicAlias           byte = 0x23 // two-byte integer, not 0
	PropMaximumQoS           byte = 0x24 // byte 0 or 1
	PropRetainAvailable      byte = 0x25 // byte 0 or 1
	PropUser                 byte = 0x26 // string pair, may repeat
	PropMaximumPacketSize    byte = 0x27 // four-byte integer, not 0
	PropWildcardSubAvailable byte = 0x28 // byte 0 or 1
	PropSubIDAvailable       byte = 0x29 // byte 0 or 1
	PropSharedSubAvailable   byte = 0x2A // byte 0 or 1
)

// UserProperty is one User Property (a name and value pair).
type UserProperty struct{ Key, Value string }

// Properties holds the decoded properties of a packet other than PUBLISH
// (whose properties stay in its body, see Publish). Has records which
// were present: bit id is set for property id. Encoders write exactly the
// properties whose bit is set (Set), in identifier order, then the User
// Properties in their order.
type Properties struct {
	Has uint64

	PayloadFormat        byte
	RequestProblemInfo   byte
	RequestResponseInfo  byte
	MaximumQoS           byte
	RetainAvailable      byte
	WildcardSubAvailable byte
	SubIDAvailable       byte
	SharedSubAvailable   byte

	ServerKeepAlive   uint16
	ReceiveMaximum    uint16
	TopicAliasMaximum uint16
	TopicAlias        uint16

	MessageExpiry     uint32
	SessionExpiry     uint32
	WillDelay         uint32
	MaximumPacketSize uint32
	SubscriptionID    uint32

	ContentType      string
	ResponseTopic    string
	AssignedClientID string
	AuthMethod       string
	ResponseInfo     string
	ServerReference  string
	ReasonString     string

	CorrelationData []byte
	AuthData        []byte

	User []UserProperty
}

// Is reports whether property id is present.
func (p *Properties) Is(id byte) bool { return id < 64 && p.Has&(1<<id) != 0 }

// Set marks properties as present (to be encoded).
func (p *Properties) Set(ids ...byte) {
	for _, id := range ids {
		p.Has |= 1 << id
	}
}

// propKind is the data type of a property's value.
type propKind uint8

const (
	kindNone propKind = iota
	kindByte
	kindU16
	kindU32
	kindVarint
	kindString
	kindBinary
	kindPair
)

// propKinds maps each identifier to its value type (kindNone: unknown).
var propKinds = [64]propKind{
	PropPayloadFormat: kindByte, PropMessageExpiry: kindU32, PropContentType: kindString,
	PropResponseTopic: kindString, PropCorrelationData: kindBinary, PropSubscriptionID: kindVarint,
	PropSessionExpiry: kindU32, PropAssignedClientID: kindString, PropServerKeepAlive: kindU16,
	PropAuthMethod: kindString, PropAuthData: kindBinary, PropRequestProblemInfo: kindByte,
	PropWillDelay: kindU32, PropRequestResponseInfo: kindByte, PropResponseInfo: kindString,
	PropServerReference: kindString, PropReasonString: kindString, PropReceiveMaximum: kindU16,
	PropTopicAliasMaximum: kindU16, PropTopicAlias: kindU16, PropMaximumQoS: kindByte,
	PropRetainAvailable: kindByte, PropUser: kindPair, PropMaximumPacketSize: kindU32,
	PropWildcardSubAvailable: kindByte, PropSubIDAvailable: kindByte, PropSharedSubAvailable: kindByte,
}

func propSet(ids ...byte) uint64 {
	var m uint64
	for _, id := range ids {
		m |= 1 << id
	}
	return m
}

// The properties each packet may carry (section 2.2.2.2). PUBLISH from a
// client may not carry a Subscription Identifier [MQTT-3.3.4-6].
var (
	propsConnect = propSet(PropSessionExpiry, PropAuthMethod, PropAuthData, PropRequestProblemInfo,
		PropRequestResponseInfo, PropReceiveMaximum, PropTopicAliasMaximum, PropUser, PropMaximumPacketSize)
	propsWill = propSet(PropPayloadFormat, PropMessageExpiry, PropContentType, PropResponseTopic,
		PropCorrelationData, PropWillDelay, PropUser)
	propsConnack = propSet(PropSessionExpiry, PropAssignedClientID, PropServerKeepAlive, PropAuthMethod,
		PropAuthData, PropResponseInfo, PropServerReference, PropReasonString, PropReceiveMaximum,
		PropTopicAliasMaximum, PropMaximumQoS, PropRetainAvailable, PropUser, PropMaximumPacketSize,
		PropWildcardSubAvailable, PropSubIDAvailable, PropSharedSubAvailable)
	propsPublish = propSet(PropPayloadFormat, PropMessageExpiry, PropContentType, PropResponseTopic,
		PropCorrelationData, PropTopicAlias, PropUser)
	propsAck         = propSet(PropReasonString, PropUser) // PUBACK..PUBCOMP, SUBACK, UNSUBACK
	propsSubscribe   = propSet(PropSubscriptionID, PropUser)
	propsUnsubscribe = propSet(PropUser)
	propsDisconnect  = propSet(PropSessionExpiry, PropServerReference, PropReasonString, PropUser)
	// propsForward: what a PUBLISH carries on to its receivers unchanged
	// (the Message Expiry Interval is carried as a deadline and written
	// again with what is left of it; a Topic Alias is the sender's).
	propsForward = propSet(PropPayloadFormat, PropContentType, PropResponseTopic, PropCorrelationData, PropUser)
)

// propIter walks a property block. An identifier not in allowed is
// refused first (so a property of another packet is malformed, whatever
// its value); values are checked for their type (strings UTF-8, varints
// minimal) and for the bounds the specification sets on them.
type propIter struct {
	b       []byte
	allowed uint64
	off     int
	id      byte
	n       uint32 // byte, two- and four-byte integers, varints
	s       []byte // strings and binary data; a pair's key
	v       []byte // a pair's value
}

// next reads the next property; ok false at the end or on err.
func (it *propIter) next() (ok bool, err error) {
	if it.off >= len(it.b) {
		return false, nil
	}
	// Identifiers are Variable Byte Integers; every defined one is < 128,
	// so a first byte with the high bit set is an unknown identifier.
	id := it.b[it.off]
	it.off++
	if id >= 64 || propKinds[id] == kindNone || it.allowed&(1<<id) == 0 {
		return false, ErrPropertyID
	}
	it.id = id
	b, off := it.b, it.off
	switch propKinds[id] {
	case kindByte:
		if off+1 > len(b) {
			return false, ErrShort
		}
		it.n = uint32(b[off])
		it.off++
		if it.n > 1 { // every byte property is 0 or 1
			return false, ErrPropertyValue
		}
	case kindU16:
		if off+2 > len(b) {
			return false, ErrShort
		}
		it.n = uint32(b[off])<<8 | uint32(b[off+1])
		it.off += 2
		if it.n == 0 && id == PropReceiveMaximum {
			return false, ErrPropertyValue // 0 is a protocol error (3.1.2.11.3, 3.2.2.3.3)
		}
		if it.n == 0 && id == PropTopicAlias {
			return false, ErrTopicAlias
		}
	case kindU32:
		if off+4 > len(b) {
			return false, ErrShort
		}
		it.n = uint32(b[off])<<24 | uint32(b[off+1])<<16 | uint32(b[off+2])<<8 | uint32(b[off+3])
		it.off += 4
		if it.n == 0 && id == PropMaximumPacketSize {
			return false, ErrPropertyValue
		}
	case kindVarint:
		v, next, err := readVarint(b, off)
		if err != nil {
			return false, err
		}
		if v == 0 {
			return false, ErrPropertyValue // Subscription Identifier 0
		}
		it.n, it.off = uint32(v), next
	case kindString, kindBinary:
		s, next, ok := readBinary(b, off)
		if !ok {
			return false, ErrShort
		}
		if propKinds[id] == kindString {
			if !validString(s) {
				return false, ErrUTF8
			}
			if id == PropResponseTopic && checkTopicName(s) != nil {
				return false, ErrResponseTopic // [MQTT-3.3.2-14]
			}
		}
		it.s, it.off = s, next
	case kindPair:
		k, next, ok := readBinary(b, off)
		if !ok {
			return false, ErrShort
		}
		v, next, ok := readBinary(b, next)
		if !ok {
			return false, ErrShort
		}
		if !validString(k) || !validString(v) {
			return false, ErrUTF8
		}
		it.s, it.v, it.off = k, v, next
	}
	return true, nil
}

// readProps reads the property length at off and returns the block and
// the offset after it.
func readProps(b []byte, off int) (props []byte, next int, err error) {
	n, off, err := readVarint(b, off)
	if err != nil {
		return nil, 0, err
	}
	if n > len(b)-off {
		return nil, 0, ErrShort
	}
	return b[off : off+n : off+n], off + n, nil
}

// decodeProps decodes block (a property block without its length) into p,
// allowing the identifiers in allowed. Strings and byte slices are copies.
func decodeProps(block []byte, allowed uint64, p *Properties) error {
	*p = Properties{}
	it := propIter{b: block, allowed: allowed}
	for {
		ok, err := it.next()
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		id := it.id
		if id != PropUser {
			if p.Is(id) {
				return ErrPropertyDup
			}
			p.Set(id)
		}
		n := it.n
		switch id {
		case PropPayloadFormat:
			p.PayloadFormat = byte(n)
		case PropRequestProblemInfo:
			p.RequestProblemInfo = byte(n)
		case PropRequestResponseInfo:
			p.RequestResponseInfo = byte(n)
		case PropMaximumQoS:
			p.MaximumQoS = byte(n)
		case PropRetainAvailable:
			p.RetainAvailable = byte(n)
		case PropWildcardSubAvailable:
			p.WildcardSubAvailable = byte(n)
		case PropSubIDAvailable:
			p.SubIDAvailable = byte(n)
		case PropSharedSubAvailable:
			p.SharedSubAvailable = byte(n)
		case PropServerKeepAlive:
			p.ServerKeepAlive = uint16(n)
		case PropReceiveMaximum:
			p.ReceiveMaximum = uint16(n)
		case PropTopicAliasMaximum:
			p.TopicAliasMaximum = uint16(n)
		case PropTopicAlias:
			p.TopicAlias = uint16(n)
		case PropMessageExpiry:
			p.MessageExpiry = n
		case PropSessionExpiry:
			p.SessionExpiry = n
		case PropWillDelay:
			p.WillDelay = n
		case PropMaximumPacketSize:
			p.MaximumPacketSize = n
		case PropSubscriptionID:
			p.SubscriptionID = n
		case PropContentType:
			p.ContentType = string(it.s)
		case PropResponseTopic:
			p.ResponseTopic = string(it.s)
		case PropAssignedClientID:
			p.AssignedClientID = string(it.s)
		case PropAuthMethod:
			p.AuthMethod = string(it.s)
		case PropResponseInfo:
			p.ResponseInfo = string(it.s)
		case PropServerReference:
			p.ServerReference = string(it.s)
		case PropReasonString:
			p.ReasonString = string(it.s)
		case PropCorrelationData:
			p.CorrelationData = slices.Clone(it.s)
		case PropAuthData:
			p.AuthData = slices.Clone(it.s)
		case PropUser:
			p.User = append(p.User, UserProperty{string(it.s), string(it.v)})
		}
	}
}

// checkProps validates block against allowed without keeping anything:
// the acks' Reason Strings and User Properties, which the server reads
// for nothing.
func checkProps(block []byte, allowed uint64) error {
	var seen uint64
	it := propIter{b: block, allowed: allowed}
	for {
		ok, err := it.next()
		if err != nil || !ok {
			return err
		}
		if it.id != PropUser {
			if seen&(1<<it.id) != 0 {
				return ErrPropertyDup
			}
			seen |= 1 << it.id
		}
	}
}

// propsLen returns the size of p's property block, without its length.
func propsLen(p *Properties) int {
	if p == nil {
		return 0
	}
	n := 0
	for id := byte(1); id < 64; id++ {
		if !p.Is(id) || id == PropUser {
			continue
		}
		n++
		switch propKinds[id] {
		case kindByte:
			n++
		case kindU16:
			n += 2
		case kindU32:
			n += 4
		case kindVarint:
			n += varintLen(int(p.SubscriptionID))
		case kindString, kindBinary:
			n += 2 + len(propBytes(p, id))
		}
	}
	for _, u := range p.User {
		n += 1 + 2 + len(u.Key) + 2 + len(u.Value)
	}
	return n
}

// propBytes returns the value of string or binary property id.
func propBytes(p *Properties, id byte) []byte {
	switch id {
	case PropContentType:
		return []byte(p.ContentType)
	case PropResponseTopic:
		return []byte(p.ResponseTopic)
	case PropCorrelationData:
		return p.CorrelationData
	case PropAssignedClientID:
		return []byte(p.AssignedClientID)
	case PropAuthMethod:
		return []byte(p.AuthMethod)
	case PropAuthData:
		return p.AuthData
	case PropResponseInfo:
		return []byte(p.ResponseInfo)
	case PropServerReference:
		return []byte(p.ServerReference)
	case PropReasonString:
		return []byte(p.ReasonString)
	}
	return nil
}

// propNumber returns the value of integer property id.
func propNumber(p *Properties, id byte) uint32 {
	switch id {
	case PropPayloadFormat:
		return uint32(p.PayloadFormat)
	case PropRequestProblemInfo:
		return uint32(p.RequestProblemInfo)
	case PropRequestResponseInfo:
		return uint32(p.RequestResponseInfo)
	case PropMaximumQoS:
		return uint32(p.MaximumQoS)
	case PropRetainAvailable:
		return uint32(p.RetainAvailable)
	case PropWildcardSubAvailable:
		return uint32(p.WildcardSubAvailable)
	case PropSubIDAvailable:
		return uint32(p.SubIDAvailable)
	case PropSharedSubAvailable:
		return uint32(p.SharedSubAvailable)
	case PropServerKeepAlive:
		return uint32(p.ServerKeepAlive)
	case PropReceiveMaximum:
		return uint32(p.ReceiveMaximum)
	case PropTopicAliasMaximum:
		return uint32(p.TopicAliasMaximum)
	case PropTopicAlias:
		return uint32(p.TopicAlias)
	case PropMessageExpiry:
		return p.MessageExpiry
	case PropSessionExpiry:
		return p.SessionExpiry
	case PropWillDelay:
		return p.WillDelay
	case PropMaximumPacketSize:
		return p.MaximumPacketSize
	case PropSubscriptionID:
		return p.SubscriptionID
	}
	return 0
}

// appendProps appends p's property length and block (propsLen bytes).
func appendProps(dst []byte, p *Properties, n int) []byte {
	dst = appendVarint(dst, n)
	if p == nil {
		return dst
	}
	for id := byte(1); id < 64; id++ {
		if !p.Is(id) || id == PropUser {
			continue
		}
		dst = append(dst, id)
		v := propNumber(p, id)
		switch propKinds[id] {
		case kindByte:
			dst = append(dst, byte(v))
		case kindU16:
			dst = append(dst, byte(v>>8), byte(v))
		case kindU32:
			dst = append(dst, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
		case kindVarint:
			dst = appendVarint(dst, int(v))
		case kindString, kindBinary:
			dst = appendBinary(dst, propBytes(p, id))
		}
	}
	for _, u := range p.User {
		dst = append(dst, PropUser)
		dst = appendString(dst, u.Key)
		dst = appendString(dst, u.Value)
	}
	return dst
}

// ForwardProps appends to dst the properties of a PUBLISH's property block
// (Publish.Props) that travel on to its receivers: Payload Format
// Indicator, Content Type, Response Topic, Correlation Data and User
// Properties, in their order. The block must come from DecodePublish.
func ForwardProps(dst, block []byte) []byte {
	it := propIter{b: block, allowed: propsPublish}
	for {
		start := it.off
		ok, err := it.next()
		if err != nil || !ok {
			return dst
		}
		if propsForward&(1<<it.id) != 0 {
			dst = append(dst, block[start:it.off]...)
		}
	}
}

// AppendForwardProps appends to dst, as a property block without its
// length, the properties of p that travel on to receivers (those
// ForwardProps keeps): a Will's, published later.
func AppendForwardProps(dst []byte, p *Properties) []byte {
	q := *p
	q.Has &= propsForward
	n := propsLen(&q)
	if n == 0 {
		return dst
	}
	start := len(dst)
	dst = appendProps(dst, &q, n)
	k := varintLen(n)
	return append(dst[:start], dst[start+k:]...)
}

// readVarint reads a Variable Byte Integer of at most 4 bytes in its
// shortest form [MQTT-1.5.5-1].
func readVarint(b []byte, off int) (v, next int, err error) {
	mult := 1
	for i := 0; i < 4; i++ {
		if off+i >= len(b) {
			return 0, 0, ErrShort
		}
		c := b[off+i]
		v += int(c&0x7f) * mult
		if c&0x80 == 0 {
			if i > 0 && c == 0 {
				return 0, 0, ErrVarint // a padded encoding
			}
			return v, off + i + 1, nil
		}
		mult <<= 7
	}
	return 0, 0, ErrVarint
}
