package api

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/store"
)

var errNoStats = newError(http.StatusServiceUnavailable, "unavailable", "cluster statistics are not served here")

type clusterStatsResponse struct {
	Nodes []NodeStats `json:"nodes"`
}

// GET /v1/cluster/stats (admin)
func (a *API) clusterStats(q *request) error {
	if err := a.needAdmin(q); err != nil {
		return err
	}
	if a.deps.Stats == nil {
		return errNoStats
	}
	writeJSON(q.w, http.StatusOK, clusterStatsResponse{Nodes: nonNil(a.deps.Stats())})
	return nil
}

// tailMessage is one event of a group's tail.
type tailMessage struct {
	ID            string `json:"id"`
	From          string `json:"from"`
	QoS           byte   `json:"qos"`
	Stored        string `json:"stored"`
	Payload       string `json:"payload,omitempty"`        // when valid UTF-8
	PayloadBase64 string `json:"payload_base64,omitempty"` // otherwise
}

// tailWriteTimeout bounds each write of a tail.
const tailWriteTimeout = 30 * time.Second

// maxTails bounds the tails streaming at once on a node: each holds a
// connection and a consumer on the message stream.
const maxTails = 16

// GET /v1/groups/{gid}/tail (admin): a text/event-stream of the group's
// stored messages (QoS 1 and 2) from now on, one "message" event each,
// a comment every 15 s to keep proxies from closing it.
func (a *API) groupTail(q *request) error {
	if err := a.needAdmin(q); err != nil {
		return err
	}
	gid := q.r.PathValue("gid")
	if !store.ValidID(gid) {
		return errInvalidID
	}
	if a.deps.Tail == nil {
		return errNoStats
	}
	ctx := q.r.Context()
	if _, err := a.st.Group(ctx, gid); err != nil {
		return storeError(err, errNotFound)
	}
	select {
	case a.tails <- struct{}{}:
		defer func() { <-a.tails }()
	default:
		return newError(http.StatusServiceUnavailable, "busy", "too many live tails on this node")
	}
	rc := http.NewResponseController(q.w)
	// The server's write deadline would end the stream: each write gets
	// its own instead, so a client that stops reading is let go (the
	// stream ends at the first write that fails).
	write := func(b ...[]byte) error {
		rc.SetWriteDeadline(time.Now().Add(tailWriteTimeout))
		for _, p := range b {
			if _, err := q.w.Write(p); err != nil {
				return err
			}
		}
		return rc.Flush()
	}
	h := q.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	q.w.WriteHeader(http.StatusOK)
	if write([]byte(": tail of "+gid+"\n\n")) != nil {
		return nil
	}
	msgs := make(chan tailMessage, 256)
	errc := make(chan error, 1)
	go func() {
		errc <- a.deps.Tail(ctx, gid, func(stored time.Time, m *message.Message) {
			t := tailMessage{ID: message.FormatID(m.ID), From: m.From, QoS: m.QoS, Stored: stored.UTC().Format(time.RFC3339Nano)}
			if utf8.Valid(m.Payload) {
				t.Payload = string(m.Payload)
			} else {
				t.PayloadBase64 = base64.StdEncoding.EncodeToString(m.Payload)
			}
			select {
			case msgs <- t:
			default: // a browser that does not keep up misses messages, not the node
			}
		})
	}()
	keep := time.NewTicker(15 * time.Second)
	defer keep.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			if err != nil {
				a.log.Warn("api: group tail ended", "group", gid, "err", err)
			}
			return nil
		case <-keep.C:
			if write([]byte(": keepalive\n\n")) != nil {
				return nil
			}
		case t := <-msgs:
			b, _ := json.Marshal(t)
			if write([]byte("event: message\ndata: "), b, []byte("\n\n")) != nil {
				return nil
			}
		}
	}
}
