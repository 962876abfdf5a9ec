package chaos

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Window is a stretch of a chaos run: before the first fault ("steady"),
// or from a fault (kill9, term, stop) to the next one; the restarts and
// continues in between belong to it. Messages count in the window they
// were made in: one made just before a fault and lost by it counts in the
// window before. Analyze fills it, Finish sets its exported times and
// figures.
type Window struct {
	Name  string  `json:"name"`
	FromS float64 `json:"from_s"` // since the traffic started
	ToS   float64 `json:"to_s"`
	Fault bool    `json:"fault"`

	GroupMade   int `json:"group_made"`
	GroupAcked  int `json:"group_acked"` // PUBACKed: owed to every member
	DirectMade  int `json:"direct_made"`
	DirectAcked int `json:"direct_acked"`
	// Expected member deliveries of the acknowledged messages, those that
	// came (at least once), those that never did, extra copies, and first
	// deliveries that came after a later message of the same publisher.
	Expected   int `json:"expected"`
	Got        int `json:"got"`
	Lost       int `json:"lost"`
	LostGroup  int `json:"lost_group"`
	LostDirect int `json:"lost_direct"`
	Duplicates int `json:"duplicates"`
	OutOfOrder int `json:"out_of_order"`
	Strays     int `json:"strays,omitempty"` // deliveries to the wrong member, or unreadable

	// Members whose connection broke in the window, and for them the time
	// from the fault to their first delivery after they reconnected; Never:
	// those that got none before the end.
	Disconnected        int      `json:"disconnected"`
	ReconnectFirstP50ms *float64 `json:"reconnect_first_delivery_p50_ms,omitempty"`
	ReconnectFirstMaxms *float64 `json:"reconnect_first_delivery_max_ms,omitempty"`
	Never               int      `json:"never_delivered,omitempty"`
	// The longest a member went without a group message in the window
	// (max and median over the members).
	SilenceMaxms float64 `json:"silence_max_ms"`
	SilenceP50ms float64 `json:"silence_p50_ms"`

	firsts, silences []time.Duration
	from, to         time.Duration // since the epoch
	began            time.Duration // the fault's, since the traffic started
}

// Windows cuts [start, end) (since the epoch) at each disruptive step of
// events (whose times are since start). A fault window is named after its
// step: "kill9 nats2 (nats-leader)", the target in parentheses if it
// resolved to another name.
func Windows(events []Event, start, end time.Duration) []*Window {
	wins := []*Window{{Name: "steady", from: start}}
	for _, ev := range events {
		if !ev.Disruptive() {
			continue
		}
		at := start + ev.Began
		wins[len(wins)-1].to = at
		name := ev.Action + " " + ev.Resolved
		if ev.Resolved != ev.Target {
			name += " (" + ev.Target + ")"
		}
		wins = append(wins, &Window{Name: name, from: at, Fault: true, began: ev.Began})
	}
	wins[len(wins)-1].to = end
	return wins
}

func (w *Window) of(at time.Duration) bool { return at >= w.from && at < w.to }

// Analyze fills the windows with what the members got of the group
// messages grecs and the direct messages drecs (a message made before
// the first window belongs to it, one made after the last window's end
// to the last) and returns the totals, named "total".
func Analyze(ms []*Member, grecs, drecs []Record, wins []*Window) *Window {
	winOf := func(at time.Duration) *Window {
		for _, w := range wins {
			if at < w.to {
				return w
			}
		}
		return wins[len(wins)-1]
	}
	gWin := make([]*Window, len(grecs))
	for i, r := range grecs {
		w := winOf(r.Made)
		gWin[i] = w
		w.GroupMade++
		if r.Acked != 0 {
			w.GroupAcked++
			w.Expected += len(ms)
		}
	}
	dWin := make([]*Window, len(drecs))
	for i, r := range drecs {
		w := winOf(r.Made)
		dWin[i] = w
		w.DirectMade++
		if r.Acked != 0 {
			w.DirectAcked++
			w.Expected++
		}
	}
	gcount := make([]int, len(grecs))
	dcount := make([]int, len(drecs))
	for _, m := range ms {
		h := m.History()
		wins[0].Strays += h.Strays

		// Copies, and first deliveries out of order, per publisher.
		clear(gcount)
		clear(dcount)
		maxG, maxD := -1, -1
		count := func(seq int, counts []int, recs []Record, win []*Window, maxSeq *int) {
			counts[seq]++
			if counts[seq] == 1 && recs[seq].Acked != 0 {
				if seq < *maxSeq {
					win[seq].OutOfOrder++
				} else {
					*maxSeq = seq
				}
			}
		}
		for _, a := range h.Got {
			switch seq := int(a.Seq); {
			case a.Kind == 'g' && seq < len(grecs):
				count(seq, gcount, grecs, gWin, &maxG)
			case a.Kind == 'd' && seq < len(drecs):
				count(seq, dcount, drecs, dWin, &maxD)
			}
		}
		for seq, r := range grecs {
			if r.Acked == 0 {
				continue
			}
			if n := gcount[seq]; n == 0 {
				gWin[seq].Lost++
				gWin[seq].LostGroup++
			} else {
				gWin[seq].Got++
				gWin[seq].Duplicates += n - 1
			}
		}
		for seq, r := range drecs {
			if r.Acked == 0 || !m.IsTarget(seq) {
				continue
			}
			if n := dcount[seq]; n == 0 {
				dWin[seq].Lost++
				dWin[seq].LostDirect++
			} else {
				dWin[seq].Got++
				dWin[seq].Duplicates += n - 1
			}
		}

		for _, w := range wins {
			// The longest silence (no group message) within w.
			var silence time.Duration
			last := w.from
			for _, a := range h.Got {
				if a.Kind != 'g' || a.At < w.from {
					continue
				}
				silence = max(silence, min(a.At, w.to)-last)
				if a.At >= w.to {
					break
				}
				last = a.At
			}
			silence = max(silence, w.to-last)
			w.silences = append(w.silences, silence)

			if !w.Fault {
				continue
			}
			// A member disconnected by the fault: the time from the fault
			// to its first delivery after it reconnected.
			i := slices.IndexFunc(h.Lost, w.of)
			if i < 0 {
				continue
			}
			w.Disconnected++
			j := slices.IndexFunc(h.Conns, func(at time.Duration) bool { return at > h.Lost[i] })
			k := -1
			if j >= 0 {
				k = slices.IndexFunc(h.Got, func(a Arrival) bool { return a.At > h.Conns[j] })
			}
			if k < 0 {
				w.Never++
				continue
			}
			w.firsts = append(w.firsts, h.Got[k].At-w.from)
		}
	}
	total := &Window{Name: "total"}
	for _, w := range wins {
		total.GroupMade += w.GroupMade
		total.GroupAcked += w.GroupAcked
		total.DirectMade += w.DirectMade
		total.DirectAcked += w.DirectAcked
		total.Expected += w.Expected
		total.Got += w.Got
		total.Lost += w.Lost
		total.LostGroup += w.LostGroup
		total.LostDirect += w.LostDirect
		total.Duplicates += w.Duplicates
		total.OutOfOrder += w.OutOfOrder
		total.Strays += w.Strays
		total.Disconnected += w.Disconnected
		total.Never += w.Never
		total.firsts = append(total.firsts, w.firsts...)
		total.silences = append(total.silences, w.silences...)
	}
	return total
}

// Finish sets the exported times (since start, the traffic's start;
// none for the total) and the figures of the collected durations.
func (w *Window) Finish(start time.Duration) {
	if w.Name != "total" {
		w.FromS, w.ToS = (w.from - start).Seconds(), (w.to - start).Seconds()
	}
	ms := func(d time.Duration) *float64 { v := float64(d) / 1e6; return &v }
	if len(w.firsts) > 0 {
		slices.Sort(w.firsts)
		w.ReconnectFirstP50ms, w.ReconnectFirstMaxms = ms(w.firsts[len(w.firsts)/2]), ms(w.firsts[len(w.firsts)-1])
	}
	if len(w.silences) > 0 {
		slices.Sort(w.silences)
		w.SilenceP50ms, w.SilenceMaxms = *ms(w.silences[len(w.silences)/2]), *ms(w.silences[len(w.silences)-1])
	}
}

// Line is the window's report on one line, as the chaos tests log it: a
// fault window's name says when the fault began; the total says no
// silence (a window's measure).
func (w *Window) Line() string {
	var b strings.Builder
	if w.Name != "total" {
		b.WriteString(w.Name)
		if w.Fault {
			fmt.Fprintf(&b, " at %v", w.began.Round(100*time.Millisecond))
		}
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, "lost=%d (group %d, direct %d) dup=%d reordered=%d; group %d made %d acked, direct %d made %d acked",
		w.Lost, w.LostGroup, w.LostDirect, w.Duplicates, w.OutOfOrder, w.GroupMade, w.GroupAcked, w.DirectMade, w.DirectAcked)
	r := func(d time.Duration) string { return d.Round(10 * time.Millisecond).String() }
	if w.Fault {
		fmt.Fprintf(&b, "; disconnected %d", w.Disconnected)
		if len(w.firsts) > 0 {
			slices.Sort(w.firsts)
			fmt.Fprintf(&b, ", reconnect_first_delivery max=%s p50=%s min=%s", r(w.firsts[len(w.firsts)-1]),
				r(w.firsts[len(w.firsts)/2]), r(w.firsts[0]))
		}
		if w.Never > 0 {
			fmt.Fprintf(&b, ", %d never got one", w.Never)
		}
	}
	if len(w.silences) > 0 && w.Name != "total" {
		slices.Sort(w.silences)
		fmt.Fprintf(&b, "; longest silence max=%s p50=%s", r(w.silences[len(w.silences)-1]), r(w.silences[len(w.silences)/2]))
	}
	return b.String()
}
