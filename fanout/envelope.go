package fanout

// Envelope format, version 2
//
// Every message between nodes is one envelope, published on the receiving
// node's subject (see Subject), or, for a Topic envelope, on the topic's
// subject (see TopicSubject). All integers marked "uvarint" are unsigned
// LEB128 varints as written by encoding/binary.AppendUvarint, in their
// shortest form: the decoder refuses padded varints, so every valid
// envelope has exactly one encoding. A "str" is a uvarint byte length
// followed by that many bytes. Nothing follows the last field.
//
//	offset  size  field
//	0       1     version, 2
//	1       1     kind: 1 Resolve, 2 Deliver, 3 Attach, 4 Detach,
//	              5 AttachMany, 6 Resolve awaiting an ack, 7 Deliver
//	              awaiting an ack, 8 Ack, 9 Dropped, 10 Topic,
//	              11 Presence, 12 PresenceAnswer
//	2       1     hops: Resolve: how many times a node re-sent the message
//	              because ownership had moved (see Config.HopLimit);
//	              Deliver: 0 from the resolving or sending node, 1 when a
//	              home sent it on along an attach record (never forwarded
//	              again); Attach, Detach, Topic: 0
//	3       str   sender node id, non-empty
//
// Resolve (a group message on its way to the group's owner), Deliver
// (a message plus the recipients homed at the receiving node) and Topic
// go on with the message:
//
//	        8     message id, big-endian
//	        8     stream sequence, big-endian: the message's sequence in
//	              the cluster's message stream, 0 when it is not stored
//	              (QoS 0)
//	        1     message kind: 1 direct, 2 group, 3 topic (Resolve: group
//	              only; Deliver: direct or group; Topic: topic only), plus
//	              0x80 when the extension below follows the payload
//	        1     QoS: 0 or 1
//	        str   from: publisher principal id, may be empty (admin over HTTP)
//	        str   to: principal id (direct), group id (group) or topic
//	              name (topic), non-empty
//	        str   payload, may be empty
//
// The extension (message.Message's Expires and Props), present only when
// one of them is set, so a node of an earlier release refuses such a
// message (an unknown kind) rather than deliver it without them:
//
//	        uvarint  expires: Unix milliseconds, 0 for never
//	        str      MQTT 5.0 property block, may be empty
//
// Deliver then lists its recipients:
//
//	        uvarint  recipient count, at least 1
//	        str      recipient principal id, non-empty; count times
//
// Topic (kind 10) is the header and the message, nothing after: a topic
// message (message kind 3, to: the MQTT topic name) for every session of
// the receiving node whose subscription matches it. It goes to a topic
// subject, never to a node's subject, and carries no ack request. Nodes
// of an earlier release refuse the kind, but they never subscribe to
// topic subjects either, so the format's version did not change.
//
// Kinds 6 and 7 are Resolve and Deliver of a QoS 1 message whose
// publisher waits for its PUBACK until the message is queued for every
// recipient (see ack.go). Between the header and the message they carry
// who waits:
//
//	        str      ack node: the publisher's node, non-empty
//	        uvarint  ack id, that node's number for the wait
//
// The decoded Envelope has Kind Resolve or Deliver and AckNode set.
//
// Ack (kind 8) answers them, batched per waiting node:
//
//	        uvarint  entry count, at least 1
//	        uvarint  ack id; then
//	        uvarint  n<<1 | expect, n at most 2^32-1; count times
//
// expect 0: n Deliver envelopes for the id were taken in (a home node
// sends 1 for each). expect 1: the group's owner resolved the id into n
// Deliver envelopes (the waiting node knows the count only then).
//
// Attach and Detach (principal id → the node that has its connection)
// carry two fields after the header instead:
//
//	        str   principal id, non-empty
//	        str   attached node id, non-empty
//
// AttachMany means what one Attach per listed principal would (renewals
// and re-attachment after a ring change, batched per home node):
//
//	        str      attached node id, non-empty
//	        uvarint  principal count, at least 1
//	        str      principal id, non-empty; count times
//
// Presence (kind 11) asks the receiving node which principals are
// connected to it now; PresenceAnswer (kind 12) answers, to the asking
// node's subject:
//
//	Presence:
//	        uvarint  query id, at least 1: the asking node's number for it
//	        str      group id: its members are asked about; or empty
//	        uvarint  principal count, then that many str principal ids:
//	                 those are asked about (exactly one of group and
//	                 principals is non-empty)
//	PresenceAnswer:
//	        uvarint  query id, at least 1
//	        uvarint  how many of those asked about are connected
//	        uvarint  count listed, at most the one before; then
//	        str      a connected principal id, non-empty; count times
//
// Nodes of an earlier release refuse the kinds (counted); the asking
// node then hears nothing from them, as from a node that died.
//
// Dropped (kind 9) is the header alone: the sender's bus connection
// dropped and is back; envelopes it sent or was sent meanwhile may be
// lost (see Mute).
//
// The stream sequence is the one fixed-width field after the header on
// purpose: a sender may encode the envelope first and write the sequence
// into it when the stream answers, without moving any other byte. Its
// offset is the header's length, plus the ack node and id of kinds 6
// and 7, plus 8 (Topic envelopes included).
//
// Example, a Deliver of direct message 0x0102030405060708, stream
// sequence 0x1234, at QoS 1 from "a" to "b", payload "hi", sent by node
// "n1" that has not re-sent it:
//
//	02 02 00  02 6e 31  01 02 03 04 05 06 07 08  00 00 00 00 00 00 12 34
//	01 01  01 61  01 62  02 68 69  01  01 62
//
// A version bump is needed for any change a decoder of the previous
// version would misread (version 2 added the stream sequence); a decoder
// refuses versions it does not know, so nodes of mixed versions drop each
// other's envelopes (counted) instead of misrouting.
//
// A decoded envelope aliases one private copy of the wire bytes: strings
// and the payload point into it. See DecodeEnvelope.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unsafe"

	"github.com/pushring/pushring/message"
)

// EnvelopeVersion is the version this package writes and the only one it
// reads.
const EnvelopeVersion = 2

// EnvelopeKind says what an envelope asks the receiving node to do.
type EnvelopeKind uint8

const (
	// KindResolve: resolve group message Msg (its owner expands it to
	// members and sends Deliver envelopes).
	KindResolve EnvelopeKind = 1
	// KindDeliver: hand Msg to the local sessions of Recipients.
	KindDeliver EnvelopeKind = 2
	// KindAttach: principal Principal is connected to node Node.
	KindAttach EnvelopeKind = 3
	// KindDetach: principal Principal is no longer connected to node Node.
	KindDetach EnvelopeKind = 4
	// KindAttachMany: every principal in Principals is connected to node
	// Node (an Attach for each, in one envelope).
	KindAttachMany EnvelopeKind = 5
	// KindAck: the deliveries awaited under Acks' ids were taken in.
	KindAck EnvelopeKind = 8
	// KindDropped: the sender's bus connection dropped and is back.
	KindDropped EnvelopeKind = 9
	// KindTopic: hand topic message Msg to the local sessions whose
	// subscriptions match its topic (TopicDeliverer). Sent on the
	// topic's subject, to every node that watches a matching filter.
	KindTopic EnvelopeKind = 10
	// KindPresence: which of Principals (or of Group's members) are
	// connected to the receiving node? Asked under Query.
	KindPresence EnvelopeKind = 11
	// KindPresenceAnswer: Count of those asked about under Query are
	// connected to the sender; Principals lists them (all, or the first).
	KindPresenceAnswer EnvelopeKind = 12
)

// Wire kinds of a Resolve and a Deliver with AckNode set.
const (
	kindResolveAcked EnvelopeKind = 6
	kindDeliverAcked EnvelopeKind = 7
)

func (k EnvelopeKind) String() string {
	switch k {
	case KindResolve:
		return "resolve"
	case KindDeliver:
		return "deliver"
	case KindAttach:
		return "attach"
	case KindDetach:
		return "detach"
	case KindAttachMany:
		return "attach-many"
	case KindAck:
		return "ack"
	case KindDropped:
		return "dropped"
	case KindTopic:
		return "topic"
	case KindPresence:
		return "presence"
	case KindPresenceAnswer:
		return "presence-answer"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Envelope is the decoded form of one envelope. Which fields are used
// depends on Kind; the others must be zero for AppendEnvelope.
type Envelope struct {
	Kind   EnvelopeKind
	Hops   uint8
	Sender string // node id of the sending node

	// Msg: Resolve, Deliver and Topic.
	Msg message.Message
	// Recipients: Deliver only; principal ids homed at the receiving node.
	Recipients []string

	// Principal and Node: Attach and Detach; Node and Principals:
	// AttachMany.
	Principal  string
	Node       string
	Principals []string

	// AckNode and AckID: Resolve and Deliver only, optional. AckNode is
	// the node whose publisher waits for this QoS 1 message to be taken
	// in (it gets an Ack for AckID); empty: nobody waits.
	AckNode string
	AckID   uint64

	// Acks: Ack only, at least one.
	Acks []Ack

	// Query: Presence and PresenceAnswer, at least 1. Group: Presence,
	// when its members are asked about (Principals empty then; else
	// Principals are, at least one). Count: PresenceAnswer, how many are
	// connected, of which Principals lists all or the first.
	Query uint64
	Group string
	Count uint64
}

// Ack is one entry of an Ack envelope (see the format above).
type Ack struct {
	ID     uint64
	N      uint32
	Expect bool
}

// Errors of the envelope codec. Decode errors wrap ErrMalformed unless the
// version or kind is unknown.
var (
	ErrEnvelopeVersion = errors.New("fanout: unknown envelope version")
	ErrEnvelopeKind    = errors.New("fanout: unknown envelope kind")
	ErrMalformed       = errors.New("fanout: malformed envelope")
	// ErrInvalidEnvelope: AppendEnvelope was given an envelope that the
	// decoder would refuse.
	ErrInvalidEnvelope = errors.New("fanout: invalid envelope")
)

// Decode errors are values made once, so that refusing garbage does not
// allocate.
var (
	errTruncated       = fmt.Errorf("%w: truncated", ErrMalformed)
	errTrailing        = fmt.Errorf("%w: trailing bytes", ErrMalformed)
	errVarint          = fmt.Errorf("%w: bad uvarint", ErrMalformed)
	errEmptySender     = fmt.Errorf("%w: empty sender", ErrMalformed)
	errMsgKind         = fmt.Errorf("%w: bad message kind", ErrMalformed)
	errMsgExt          = fmt.Errorf("%w: empty or out-of-range message extension", ErrMalformed)
	errQoS             = fmt.Errorf("%w: bad QoS", ErrMalformed)
	errEmptyTo         = fmt.Errorf("%w: empty to", ErrMalformed)
	errNoRecipients    = fmt.Errorf("%w: no recipients", ErrMalformed)
	errEmptyRecipient  = fmt.Errorf("%w: empty recipient", ErrMalformed)
	errEmptyAttachment = fmt.Errorf("%w: empty principal or node", ErrMalformed)
	errNoPrincipals    = fmt.Errorf("%w: no principals", ErrMalformed)
	errEmptyAckNode    = fmt.Errorf("%w: empty ack node", ErrMalformed)
	errNoAcks          = fmt.Errorf("%w: no acks", ErrMalformed)
	errAckCount        = fmt.Errorf("%w: ack count over 2^32-1", ErrMalformed)
	errBadAckNode      = fmt.Errorf("%w: ack node is not a node id", ErrMalformed)
	errBadSender       = fmt.Errorf("%w: sender is not a node id", ErrMalformed)
	errBadNode         = fmt.Errorf("%w: attachment node is not a node id", ErrMalformed)
	errPresence        = fmt.Errorf("%w: presence without a query id, or with both or neither of group and principals", ErrMalformed)
	errPresenceCount   = fmt.Errorf("%w: presence answer lists more than its count", ErrMalformed)
)

// headerLen is the fixed part of the header: version, kind, hops.
const headerLen = 3

// msgFixedLen is the fixed part of a message: id, stream sequence, kind,
// QoS.
const msgFixedLen = 8 + 8 + 1 + 1

// AppendEnvelope appends the encoding of e to dst and returns the extended
// slice. It does not allocate when dst has room. It refuses (with
// ErrInvalidEnvelope) exactly the envelopes DecodeEnvelope would refuse,
// so decode(encode(e)) == e for every e it accepts.
func AppendEnvelope(dst []byte, e *Envelope) ([]byte, error) {
	if err := validEnvelope(e); err != nil {
		return dst, fmt.Errorf("%w: %w", ErrInvalidEnvelope, err)
	}
	switch e.Kind {
	case KindResolve, KindDeliver:
		dst = appendMessageHeader(dst, e.Kind, e.Hops, e.Sender, ackReq{e.AckNode, e.AckID})
	default:
		dst = appendHeader(dst, e.Kind, e.Hops, e.Sender)
	}
	switch e.Kind {
	case KindResolve, KindTopic:
		dst = appendMessage(dst, &e.Msg)
	case KindDeliver:
		dst = appendMessage(dst, &e.Msg)
		dst = appendRecipients(dst, e.Recipients)
	case KindAck:
		dst = appendAcks(dst, e.Acks)
	case KindAttach, KindDetach:
		dst = appendString(dst, e.Principal)
		dst = appendString(dst, e.Node)
	case KindAttachMany:
		dst = appendString(dst, e.Node)
		dst = appendRecipients(dst, e.Principals)
	case KindPresence:
		dst = binary.AppendUvarint(dst, e.Query)
		dst = appendString(dst, e.Group)
		dst = appendIDs(dst, e.Principals)
	case KindPresenceAnswer:
		dst = binary.AppendUvarint(dst, e.Query)
		dst = binary.AppendUvarint(dst, e.Count)
		dst = appendIDs(dst, e.Principals)
	}
	return dst, nil
}

// EnvelopeSize is len of the encoding of e (e must be valid).
func EnvelopeSize(e *Envelope) int {
	n := headerSize(e.Sender)
	if e.AckNode != "" {
		n += ackReq{e.AckNode, e.AckID}.size()
	}
	switch e.Kind {
	case KindResolve, KindTopic:
		n += messageSize(&e.Msg)
	case KindDeliver:
		n += messageSize(&e.Msg) + recipientsSize(e.Recipients)
	case KindAck:
		n += acksSize(e.Acks)
	case KindAttach, KindDetach:
		n += stringSize(e.Principal) + stringSize(e.Node)
	case KindAttachMany:
		n += stringSize(e.Node) + recipientsSize(e.Principals)
	case KindPresence:
		n += uvarintSize(e.Query) + stringSize(e.Group) + recipientsSize(e.Principals)
	case KindPresenceAnswer:
		n += uvarintSize(e.Query) + uvarintSize(e.Count) + recipientsSize(e.Principals)
	}
	return n
}

func validEnvelope(e *Envelope) error {
	if e.Sender == "" {
		return errEmptySender
	}
	if !nodeIDOK(e.Sender) {
		return errBadSender
	}
	switch e.Kind {
	case KindResolve, KindDeliver:
		if err := validMessage(&e.Msg); err != nil {
			return err
		}
		if !msgKindOK(e.Kind, e.Msg.Kind) {
			return errMsgKind
		}
		if e.Kind == KindResolve {
			if e.Recipients != nil {
				return errors.New("recipients on a resolve")
			}
		} else {
			if len(e.Recipients) == 0 {
				return errNoRecipients
			}
			for _, r := range e.Recipients {
				if r == "" {
					return errEmptyRecipient
				}
			}
		}
		if e.Principal != "" || e.Node != "" || e.Principals != nil || e.Acks != nil {
			return errors.New("principal, node or acks on a " + e.Kind.String())
		}
		if e.AckNode == "" && e.AckID != 0 {
			return errEmptyAckNode
		}
		if e.AckNode != "" && !nodeIDOK(e.AckNode) {
			return errBadAckNode
		}
	case KindAck:
		if len(e.Acks) == 0 {
			return errNoAcks
		}
		m := &e.Msg
		if m.ID != 0 || m.Seq != 0 || m.Kind != 0 || m.From != "" || m.To != "" || m.QoS != 0 || m.Payload != nil ||
			e.Recipients != nil || e.Principal != "" || e.Node != "" || e.Principals != nil || e.AckNode != "" || e.AckID != 0 {
			return errors.New("fields other than acks on an ack")
		}
	case KindAttach, KindDetach, KindAttachMany:
		if e.Node != "" && !nodeIDOK(e.Node) {
			return errBadNode
		}
		if e.Kind == KindAttachMany {
			if e.Node == "" || e.Principal != "" {
				return errEmptyAttachment
			}
			if len(e.Principals) == 0 {
				return errNoPrincipals
			}
			for _, p := range e.Principals {
				if p == "" {
					return errEmptyAttachment
				}
			}
		} else {
			if e.Principal == "" || e.Node == "" {
				return errEmptyAttachment
			}
			if e.Principals != nil {
				return errors.New("principals on a " + e.Kind.String())
			}
		}
		m := &e.Msg
		if m.ID != 0 || m.Seq != 0 || m.Kind != 0 || m.From != "" || m.To != "" || m.QoS != 0 || m.Payload != nil || e.Recipients != nil ||
			e.AckNode != "" || e.AckID != 0 || e.Acks != nil {
			return errors.New("message, recipients or acks on a " + e.Kind.String())
		}
	case KindTopic:
		if err := validMessage(&e.Msg); err != nil {
			return err
		}
		if !msgKindOK(e.Kind, e.Msg.Kind) {
			return errMsgKind
		}
		// No ack request: a topic message's publisher waits for nobody.
		if e.Recipients != nil || e.Principal != "" || e.Node != "" || e.Principals != nil || e.Acks != nil ||
			e.AckNode != "" || e.AckID != 0 {
			return errors.New("recipients, principal, node, acks or an ack request on a topic")
		}
	case KindDropped:
		m := &e.Msg
		if m.ID != 0 || m.Seq != 0 || m.Kind != 0 || m.From != "" || m.To != "" || m.QoS != 0 || m.Payload != nil || e.Recipients != nil ||
			e.Principal != "" || e.Node != "" || e.Principals != nil || e.AckNode != "" || e.AckID != 0 || e.Acks != nil {
			return errors.New("fields other than the sender on a dropped")
		}
	case KindPresence, KindPresenceAnswer:
		m := &e.Msg
		if m.ID != 0 || m.Seq != 0 || m.Kind != 0 || m.From != "" || m.To != "" || m.QoS != 0 || m.Payload != nil || e.Recipients != nil ||
			e.Principal != "" || e.Node != "" || e.AckNode != "" || e.AckID != 0 || e.Acks != nil || e.Hops != 0 {
			return errors.New("fields other than presence fields on a " + e.Kind.String())
		}
		if e.Principals != nil && len(e.Principals) == 0 {
			return errors.New("an empty, non-nil principal list")
		}
		for _, p := range e.Principals {
			if p == "" {
				return errEmptyAttachment
			}
		}
		if e.Kind == KindPresence {
			if e.Query == 0 || (e.Group == "") == (len(e.Principals) == 0) || e.Count != 0 {
				return errPresence
			}
		} else if e.Query == 0 || e.Group != "" || uint64(len(e.Principals)) > e.Count {
			return errPresenceCount
		}
	default:
		return ErrEnvelopeKind
	}
	return nil
}

// validMessage reports whether m can travel in an envelope (of some
// kind: see msgKindOK).
func validMessage(m *message.Message) error {
	if m.Kind != message.Direct && m.Kind != message.Group && m.Kind != message.Topic {
		return errMsgKind
	}
	if m.QoS > 2 {
		return errQoS
	}
	if m.To == "" {
		return errEmptyTo
	}
	return nil
}

// msgKindOK reports whether an envelope of kind k may carry a message of
// kind mk: a Resolve a group message, a Deliver a direct or group one
// (a topic message has no recipients: it travels in Topic envelopes), a
// Topic a topic message.
func msgKindOK(k EnvelopeKind, mk message.Kind) bool {
	switch k {
	case KindResolve:
		return mk == message.Group
	case KindDeliver:
		return mk == message.Direct || mk == message.Group
	case KindTopic:
		return mk == message.Topic
	}
	return false
}

// The append and size helpers below are what the hot path uses directly,
// on inputs it has validated once.

func appendHeader(dst []byte, k EnvelopeKind, hops uint8, sender string) []byte {
	dst = append(dst, EnvelopeVersion, byte(k), hops)
	return appendString(dst, sender)
}

// ackReq is who waits for a Resolve's or Deliver's message to be taken
// in: AckNode and AckID of the Envelope (node empty: nobody).
type ackReq struct {
	node string
	id   uint64
}

func (a ackReq) size() int {
	if a.node == "" {
		return 0
	}
	return stringSize(a.node) + uvarintSize(a.id)
}

// appendMessageHeader is appendHeader for a Resolve or Deliver (k), with
// the wire kind and fields of a.
func appendMessageHeader(dst []byte, k EnvelopeKind, hops uint8, sender string, a ackReq) []byte {
	if a.node == "" {
		return appendHeader(dst, k, hops, sender)
	}
	wire := kindResolveAcked
	if k == KindDeliver {
		wire = kindDeliverAcked
	}
	dst = appendHeader(dst, wire, hops, sender)
	dst = appendString(dst, a.node)
	return binary.AppendUvarint(dst, a.id)
}

func appendAcks(dst []byte, acks []Ack) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(acks)))
	for _, a := range acks {
		dst = binary.AppendUvarint(dst, a.ID)
		dst = binary.AppendUvarint(dst, ackValue(a))
	}
	return dst
}

func ackValue(a Ack) uint64 {
	v := uint64(a.N) << 1
	if a.Expect {
		v |= 1
	}
	return v
}

func acksSize(acks []Ack) int {
	n := uvarintSize(uint64(len(acks)))
	for _, a := range acks {
		n += uvarintSize(a.ID) + uvarintSize(ackValue(a))
	}
	return n
}

func appendMessage(dst []byte, m *message.Message) []byte {
	ext := m.HasExtension()
	kind := byte(m.Kind)
	if ext {
		kind |= msgExt
	}
	dst = binary.BigEndian.AppendUint64(dst, m.ID)
	dst = binary.BigEndian.AppendUint64(dst, m.Seq)
	dst = append(dst, kind, m.QoS)
	dst = appendString(dst, m.From)
	dst = appendString(dst, m.To)
	dst = binary.AppendUvarint(dst, uint64(len(m.Payload)))
	dst = append(dst, m.Payload...)
	if ext {
		dst = m.AppendExtension(dst)
	}
	return dst
}

// msgExt flags a message kind whose extension follows the payload.
const msgExt = 0x80

func appendRecipients(dst []byte, rcpts []string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(rcpts)))
	for _, r := range rcpts {
		dst = appendString(dst, r)
	}
	return dst
}

// appendIDs appends a count and the ids, which may be none.
func appendIDs(dst []byte, ids []string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(ids)))
	for _, id := range ids {
		dst = appendString(dst, id)
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func uvarintSize(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

func stringSize(s string) int { return uvarintSize(uint64(len(s))) + len(s) }

func headerSize(sender string) int { return headerLen + stringSize(sender) }

func messageSize(m *message.Message) int {
	return msgFixedLen + stringSize(m.From) + stringSize(m.To) +
		uvarintSize(uint64(len(m.Payload))) + len(m.Payload) + m.ExtensionSize()
}

func recipientsSize(rcpts []string) int {
	n := uvarintSize(uint64(len(rcpts)))
	for _, r := range rcpts {
		n += stringSize(r)
	}
	return n
}

// DecodeEnvelope decodes one envelope. It is strict: an unknown version or
// kind, a field that runs past the end, a padded or overflowing uvarint,
// an empty id, a message kind or QoS out of range, or bytes after the last
// field are errors. It never panics, whatever data holds.
//
// data is copied once; the returned envelope's strings (Sender, Msg.From,
// Msg.To, Recipients, Principal, Node, Principals) and Msg.Payload alias
// that copy instead of being allocated one by one, so a decode costs
// three allocations however many recipients there are: the copy, the
// Envelope and the Recipients (or Principals) slice. This is safe because the copy is private to
// the envelope and never written after decoding (Go strings must never
// change under their readers, and nothing here or in the Deliverer
// contract writes to Payload); the garbage collector keeps the copy alive
// as long as any string or slice points into it. The cost: a receiver
// that keeps a single recipient id or the payload keeps the whole
// envelope's bytes alive.
//
// data may be reused by the caller as soon as DecodeEnvelope returns.
func DecodeEnvelope(data []byte) (*Envelope, error) {
	return decodeEnvelope(data, nil)
}

// decodeEnvelope is DecodeEnvelope that puts the recipients in scratch
// when it has room (the receive path pools them: a Deliverer must not keep
// the slice).
func decodeEnvelope(data []byte, scratch []string) (*Envelope, error) {
	if len(data) > 0 && data[0] != EnvelopeVersion {
		return nil, ErrEnvelopeVersion
	}
	if len(data) > 1 {
		if k := EnvelopeKind(data[1]); k < KindResolve || k > KindPresenceAnswer {
			return nil, ErrEnvelopeKind
		}
	}
	if len(data) < headerLen {
		return nil, errTruncated
	}
	buf := make([]byte, len(data))
	copy(buf, data)
	e := &Envelope{Kind: EnvelopeKind(buf[1]), Hops: buf[2]}
	acked := false
	switch e.Kind {
	case kindResolveAcked:
		e.Kind, acked = KindResolve, true
	case kindDeliverAcked:
		e.Kind, acked = KindDeliver, true
	}
	if err := decodeInto(e, buf, scratch, acked); err != nil {
		return nil, err
	}
	return e, nil
}

// decodeInto fills e from buf (already copied, header bytes 0-2 checked),
// aliasing buf. acked: the wire kind was 6 or 7 (e.Kind says Resolve or
// Deliver).
func decodeInto(e *Envelope, buf []byte, scratch []string, acked bool) error {
	r := reader{b: buf, off: headerLen}
	e.Sender = r.str()
	if r.err == nil && e.Sender == "" {
		return errEmptySender
	}
	// Sender, AckNode and an attachment's Node become subject tokens, map
	// keys and metric labels: only what Config.NodeID may be.
	if r.err == nil && !nodeIDOK(e.Sender) {
		return errBadSender
	}
	switch e.Kind {
	case KindResolve, KindDeliver, KindTopic:
		if acked { // Resolve or Deliver only (wire kinds 6, 7)
			e.AckNode = r.str()
			e.AckID = r.uvarint()
			if r.err == nil && e.AckNode == "" {
				return errEmptyAckNode
			}
			if r.err == nil && !nodeIDOK(e.AckNode) {
				return errBadAckNode
			}
		}
		m := &e.Msg
		ext := false
		if r.need(msgFixedLen) {
			m.ID = binary.BigEndian.Uint64(buf[r.off:])
			m.Seq = binary.BigEndian.Uint64(buf[r.off+8:])
			m.Kind = message.Kind(buf[r.off+16] &^ msgExt)
			ext = buf[r.off+16]&msgExt != 0
			m.QoS = buf[r.off+17]
			r.off += msgFixedLen
		}
		m.From = r.str()
		m.To = r.str()
		m.Payload = r.bytes()
		if ext {
			exp := r.uvarint()
			m.Props = r.bytes()
			if r.err == nil && (exp > math.MaxInt64 || exp == 0 && len(m.Props) == 0) {
				return errMsgExt // an empty extension has one encoding: none
			}
			m.Expires = int64(exp)
			if len(m.Props) == 0 {
				m.Props = nil
			}
		}
		if r.err != nil {
			return r.err
		}
		if err := validMessage(m); err != nil {
			return err
		}
		if !msgKindOK(e.Kind, m.Kind) {
			return errMsgKind
		}
		if e.Kind != KindDeliver {
			break
		}
		rcpts, err := r.list(scratch, errNoRecipients, errEmptyRecipient)
		if err != nil {
			return err
		}
		e.Recipients = rcpts
	case KindAttach, KindDetach:
		e.Principal = r.str()
		e.Node = r.str()
		if r.err != nil {
			return r.err
		}
		if e.Principal == "" || e.Node == "" {
			return errEmptyAttachment
		}
		if !nodeIDOK(e.Node) {
			return errBadNode
		}
	case KindAttachMany:
		e.Node = r.str()
		if r.err != nil {
			return r.err
		}
		if e.Node == "" {
			return errEmptyAttachment
		}
		if !nodeIDOK(e.Node) {
			return errBadNode
		}
		ps, err := r.list(scratch, errNoPrincipals, errEmptyAttachment)
		if err != nil {
			return err
		}
		e.Principals = ps
	case KindAck:
		acks, err := r.acks()
		if err != nil {
			return err
		}
		e.Acks = acks
	case KindPresence, KindPresenceAnswer:
		if e.Hops != 0 {
			return errPresence
		}
		e.Query = r.uvarint()
		if e.Kind == KindPresence {
			e.Group = r.str()
		} else {
			e.Count = r.uvarint()
		}
		ids, err := r.list(scratch, nil, errEmptyAttachment)
		if err != nil {
			return err
		}
		e.Principals = ids
		if e.Kind == KindPresence && (e.Query == 0 || (e.Group == "") == (len(ids) == 0)) {
			return errPresence
		}
		if e.Kind == KindPresenceAnswer && (e.Query == 0 || uint64(len(ids)) > e.Count) {
			return errPresenceCount
		}
	}
	if r.err != nil {
		return r.err
	}
	if r.off != len(buf) {
		return errTrailing
	}
	return nil
}

// reader walks an envelope with a sticky error: after the first error
// every read returns a zero value.
type reader struct {
	b   []byte
	off int
	err error
}

// list reads a uvarint count (at least 1) and that many non-empty str
// fields, into scratch when it has room. errNone and errEmpty are the
// errors for a zero count (nil: allowed, no list) and an empty id.
func (r *reader) list(scratch []string, errNone, errEmpty error) ([]string, error) {
	n := r.uvarint()
	if r.err != nil {
		return nil, r.err
	}
	if n == 0 {
		return nil, errNone // nil: none is allowed
	}
	// Every id takes at least two bytes (length and one byte): a count
	// that cannot fit is refused before it sizes an allocation.
	if n > uint64(len(r.b)-r.off)/2 {
		return nil, errTruncated
	}
	var ids []string
	if uint64(cap(scratch)) >= n {
		ids = scratch[:n]
	} else {
		ids = make([]string, n)
	}
	for i := range ids {
		ids[i] = r.str()
		if r.err != nil {
			return nil, r.err
		}
		if ids[i] == "" {
			return nil, errEmpty
		}
	}
	return ids, nil
}

// acks reads the entries of an Ack envelope.
func (r *reader) acks() ([]Ack, error) {
	n := r.uvarint()
	if r.err != nil {
		return nil, r.err
	}
	if n == 0 {
		return nil, errNoAcks
	}
	if n > uint64(len(r.b)-r.off)/2 { // an entry takes at least two bytes
		return nil, errTruncated
	}
	acks := make([]Ack, n)
	for i := range acks {
		acks[i].ID = r.uvarint()
		v := r.uvarint()
		if r.err != nil {
			return nil, r.err
		}
		if v>>1 > 1<<32-1 {
			return nil, errAckCount
		}
		acks[i].N, acks[i].Expect = uint32(v>>1), v&1 == 1
	}
	return acks, nil
}

// need reports whether n more bytes are there, setting errTruncated if not.
func (r *reader) need(n int) bool {
	if r.err != nil {
		return false
	}
	if len(r.b)-r.off < n {
		r.err = errTruncated
		return false
	}
	return true
}

// uvarint reads a shortest-form uvarint.
func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	var x uint64
	var s uint
	for i := 0; i < binary.MaxVarintLen64; i++ {
		if r.off >= len(r.b) {
			r.err = errTruncated
			return 0
		}
		c := r.b[r.off]
		r.off++
		if c < 0x80 {
			if (i > 0 && c == 0) || (i == binary.MaxVarintLen64-1 && c > 1) {
				r.err = errVarint // padded, or more than 64 bits
				return 0
			}
			return x | uint64(c)<<s
		}
		x |= uint64(c&0x7f) << s
		s += 7
	}
	r.err = errVarint
	return 0
}

// span reads a uvarint length and returns the offset of that many bytes,
// which it skips.
func (r *reader) span() (int, int) {
	n := r.uvarint()
	if r.err != nil {
		return 0, 0
	}
	if n > uint64(len(r.b)-r.off) {
		r.err = errTruncated
		return 0, 0
	}
	start := r.off
	r.off += int(n)
	return start, int(n)
}

// str reads a str field as a string aliasing r.b (see DecodeEnvelope for
// why that is safe).
func (r *reader) str() string {
	start, n := r.span()
	if n == 0 {
		return ""
	}
	return unsafe.String(&r.b[start], n)
}

// bytes reads a str field as a slice of r.b, capacity clipped so that an
// append by a receiver can never write into the next field.
func (r *reader) bytes() []byte {
	start, n := r.span()
	if r.err != nil {
		return nil
	}
	return r.b[start : start+n : start+n]
}
