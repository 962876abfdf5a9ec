// Package flow names the contracts of QoS 1 flow control that the router,
// fanout and the message journal share, so that each is declared once and
// none of them imports another:
//
//   - the publishing side waits, per message, for the message to be
//     stored (Receipt.Stored: only then may the publisher be
//     acknowledged) and for the delivering nodes to take it in
//     (Receipt.Accepted: pacing, never a promise of delivery);
//   - the delivering side withholds its confirmation while a recipient
//     is backlogged (AckDeliverer) and is told when it may confirm
//     (Releaser);
//   - the message store tells when an append landed (Appended).
//
// Every method is called at most once per tag or sequence, from any
// goroutine, and must not block.
package flow

import "github.com/pushring/pushring/message"

// Receipt is told what became of one QoS 1 message a publisher waits for,
// named by the tag the publisher gave.
type Receipt interface {
	// Stored says the message is stored (err nil: it may be acknowledged)
	// or could not be (the publisher must not get a PUBACK for it).
	// Called once, before Accepted. It returns whether the message is to
	// be forwarded: false when an earlier message of the same publisher
	// could not be stored, since the publisher sends that one again and
	// this one after it (forwarded now, it would arrive first). A
	// message not forwarded stays stored (replays may bring it) and gets
	// no Accepted.
	Stored(tag uint64, err error) (forward bool)
	// Accepted says every node delivering the message took it in, or
	// that the wait for them ended: the publisher may go on. Called once
	// after Stored(tag, nil); never after a Stored error.
	Accepted(tag uint64)
}

// Releaser is told when a delivery whose confirmation an AckDeliverer
// withheld may be confirmed.
type Releaser interface {
	// Confirm says the confirmation withheld under seq may go.
	Confirm(seq uint64)
}

// AckDeliverer delivers QoS 1 messages whose publishers wait for the
// delivering nodes' confirmation, and says when that confirmation is to
// be withheld because recipients are backlogged. (Throttling, elsewhere,
// is a publisher's connection read more slowly for its publish rate.)
type AckDeliverer interface {
	// DeliverAcked delivers m to recipients. It returns false when every
	// recipient's session has room for more; true (withheld) when some
	// are backlogged, and then r.Confirm(seq) follows once, from any
	// goroutine (possibly before DeliverAcked returns), when they drained
	// or stopped counting (disconnected, or too slow to wait for).
	// recipients is not kept after the call.
	DeliverAcked(m *message.Message, recipients []string, r Releaser, seq uint64) bool
}

// Appended is told when a message handed to the store landed: seq is its
// sequence in the store, or err says why it did not (it may still have
// landed, after a timeout).
type Appended interface {
	Appended(tag, seq uint64, err error)
}
