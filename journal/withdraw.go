package journal

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushring/pushring/message"
)

// Withdrawing a stored message: a publisher's connection whose earlier
// message could not be stored is closed without PUBACK, and its later
// messages, even those the stream did store, are not forwarded: the
// client sends them again, after the one that failed. The copies stored
// meanwhile must not be read back either: a replay would deliver them
// ahead of the one the client sends again, out of the publisher's order.
// They are deleted from the stream, in the background, tried again
// until the stream answers.

// withdrawQueue bounds the withdrawals waiting for the stream: they come
// only after store failures, a few per failing publisher.
const withdrawQueue = 4096

// withdrawRetry is the longest pause between two tries of one deletion.
const withdrawRetry = 5 * time.Second

// Withdraw deletes the message stored at seq, in the background. It
// does not block; when more than withdrawQueue wait already (the
// stream has been unreachable for long), the message stays and is
// counted and logged.
func (j *Journal) Withdraw(seq uint64) {
	select {
	case j.withdraws <- seq:
	default:
		j.m.withdrawDropped.Add(1)
		j.withdrawLog.Warn(j.log, time.Second, "journal: too many withdrawals waiting; a stored message that was not acknowledged stays",
			"seq", seq)
	}
}

// withdrawLoop deletes the messages Withdraw queued, in order, each
// tried until the stream says it is gone (deleted, or dropped by the
// bounds). Once Close stops it, what is queued gets one try each within
// Config.Timeout; the rest stays, counted and logged.
func (j *Journal) withdrawLoop() {
	defer close(j.withdrawDone)
	stop := j.withdrawStop
	var deadline time.Time // set once stopped
	for {
		var seq uint64
		if deadline.IsZero() {
			select {
			case seq = <-j.withdraws:
			case <-stop:
				stop, deadline = nil, time.Now().Add(j.cfg.Timeout)
				continue
			}
		} else {
			select {
			case seq = <-j.withdraws:
			default:
				return
			}
			if time.Now().After(deadline) {
				n := 1 + len(j.withdraws)
				j.m.withdrawDropped.Add(uint64(n))
				j.log.Warn("journal: closed with stored messages not withdrawn: replays may deliver them ahead of their publishers' next copies",
					"count", n)
				return
			}
		}
		for wait := 100 * time.Millisecond; ; wait = min(2*wait, withdrawRetry) {
			err := j.deleteMsg(seq)
			if err == nil {
				j.m.withdrawn.Add(1)
				break
			}
			if !deadline.IsZero() {
				j.m.withdrawDropped.Add(1)
				j.log.Warn("journal: could not withdraw a stored message before closing", "seq", seq, "err", err)
				break
			}
			j.withdrawLog.Warn(j.log, 10*time.Second, "journal: could not withdraw a stored message that was not acknowledged; trying again",
				"seq", seq, "err", err)
			select {
			case <-stop:
				stop, deadline = nil, time.Now().Add(j.cfg.Timeout)
			case <-time.After(wait):
			}
		}
	}
}

// A delete of a message that is not there is answered, depending on
// where the sequence falls, with "no message found" (10037), "sequence
// N not found" (10043), or error 10057 carrying "no message found" or,
// past the last sequence, "stream store EOF".
const (
	errNoMessage  = 10037
	errSeqMissing = 10043
)

// gone reports whether a delete's error says the message is not there.
func gone(errCode int, desc string) bool {
	return errCode == errNoMessage || errCode == errSeqMissing ||
		strings.Contains(desc, "not found") || strings.Contains(desc, "EOF")
}

// deleteMsg deletes the message at seq (nil also when it is gone
// already).
func (j *Journal) deleteMsg(seq uint64) error {
	ctx, cancel := context.WithTimeout(context.Background(), j.cfg.Timeout)
	defer cancel()
	ok, err := j.msgAPI(ctx, "DELETE", `{"seq":`+strconv.FormatUint(seq, 10)+`,"no_erase":true}`)
	if err != nil || ok {
		return err
	}
	return nil // gone already
}

// present reports whether the stream holds a message at seq.
func (j *Journal) present(ctx context.Context, seq uint64) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, j.cfg.Timeout)
	defer cancel()
	return j.msgAPI(ctx, "GET", `{"seq":`+strconv.FormatUint(seq, 10)+`}`)
}

// msgAPI calls the stream's message API op (GET, DELETE) with req: true
// when it succeeded, false when the message is not there, or an error.
func (j *Journal) msgAPI(ctx context.Context, op, req string) (bool, error) {
	msg, err := j.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG."+op+"."+j.stream, []byte(req))
	if err != nil {
		return false, err
	}
	var r struct {
		Success bool            `json:"success"` // DELETE
		Message json.RawMessage `json:"message"` // GET
		Error   *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return false, fmt.Errorf("journal: %s answer: %w", strings.ToLower(op), err)
	}
	switch {
	case r.Success || len(r.Message) > 0:
		return true, nil
	case r.Error != nil && gone(r.Error.ErrCode, r.Error.Description):
		return false, nil
	case r.Error != nil:
		return false, fmt.Errorf("journal: %s refused: %s (code %d, err_code %d)", strings.ToLower(op), r.Error.Description, r.Error.Code, r.Error.ErrCode)
	}
	return false, fmt.Errorf("journal: %s: empty answer", strings.ToLower(op))
}

// ReplayGroups calls fn, in stream order, for every stored group message
// with a sequence from from up to the stream's last sequence when
// ReplayGroups began, or atLeast if that is higher, and returns where it
// stopped: what a group's owner resolves again after it may have missed
// some (its NATS connection dropped). atLeast is a sequence the caller
// knows is stored: right after a stream's leader moved, the stream's
// info can name an older last sequence. fn may keep the message; an
// error from fn stops the read and is returned.
func (j *Journal) ReplayGroups(ctx context.Context, from, atLeast uint64,
	fn func(seq uint64, m *message.Message) error) (last uint64, err error) {
	j.m.replays.Add(1)
	_, last, err = j.Bounds(ctx)
	last = max(last, atLeast)
	if err != nil || last == 0 || from > last {
		return last, err
	}
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{j.prefix + "*." + kindGroup + ".>"},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    max(from, 1),
	}
	return last, j.consume(ctx, cfg, last, func(seq uint64, _ time.Time, m *message.Message) error { return fn(seq, m) })
}
