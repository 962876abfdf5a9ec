// Package webhook sends a node's events (sessions connected and
// disconnected, messages for a member with no live session, refusals)
// to the HTTP endpoints an operator configured, signed.
//
// Each endpoint has its own bounded queue and one sender: events go out
// in the order they were queued (so per connection, its connect before
// its disconnect), one POST each, retried with backoff on a network error or
// an answer other than 2xx. Emit never waits: an event for a full queue
// is dropped and counted, so a slow or dead endpoint costs the hot paths
// a failed channel send at most and never slows delivery. An event that
// fails every attempt is dropped and counted too.
//
// Every request carries
//
//	X-Pushring-Event:     the event type
//	X-Pushring-Id:        the event id (the same on every attempt)
//	X-Pushring-Timestamp: Unix seconds when the request was made
//	X-Pushring-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>
//
// so a receiver checks the signature with its secret, refuses old
// timestamps (replays), and drops an id it has seen (retries). Events of
// one node are numbered (seq): a receiver can order each node's events.
//
// The endpoints live in the key-value bucket the node's store already
// has (Config), under keys "w.<id>"; every node watches them, so a
// change made on one node is in force on all within milliseconds.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"
)

// Event types.
const (
	SessionConnected    = "session.connected"
	SessionDisconnected = "session.disconnected"
	MessageOffline      = "message.offline"
	Refusal             = "refusal"
)

// Types lists every event type, for validation and documentation.
var Types = []string{SessionConnected, SessionDisconnected, MessageOffline, Refusal}

// Endpoint is one configured receiver.
type Endpoint struct {
	ID  string `json:"id"`
	URL string `json:"url"`
	// Events are the types sent to it; empty: all of them.
	Events  []string  `json:"events"`
	Secret  string    `json:"secret"`
	Created time.Time `json:"created"`
}

// wants reports whether e takes events of type typ.
func (e *Endpoint) wants(typ string) bool {
	if len(e.Events) == 0 {
		return true
	}
	for _, t := range e.Events {
		if t == typ {
			return true
		}
	}
	return false
}

// Event is what an endpoint receives, as the JSON body.
type Event struct {
	ID   string    `json:"id"`
	Type string    `json:"type"`
	Time time.Time `json:"time"`
	Node string    `json:"node"`
	// Seq numbers the events of Node from 1, as they were made (a
	// restart starts again at 1, with a new ID prefix). Events of one
	// session go out in order; events of sessions made at the same
	// moment on different goroutines may go out a little out of Seq
	// order.
	Seq  uint64 `json:"seq"`
	Data any    `json:"data"`
}

// Sign returns the X-Pushring-Signature value for body sent at ts.
func Sign(secret string, ts time.Time, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(strconv.FormatInt(ts.Unix(), 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify checks a request's timestamp header value and signature against
// secret, and that the timestamp is within tolerance of now (a replayed
// request is old): what a receiver does (the tests do it too). A
// tolerance of 5 minutes leaves room for retries in flight and clocks a
// little apart.
func Verify(secret, timestamp, signature string, body []byte, now time.Time, tolerance time.Duration) bool {
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return false
	}
	ts := time.Unix(sec, 0)
	if d := now.Sub(ts); d > tolerance || d < -tolerance {
		return false
	}
	want := Sign(secret, ts, body)
	return hmac.Equal([]byte(want), []byte(signature))
}
