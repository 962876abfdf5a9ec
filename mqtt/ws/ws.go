// Package ws carries MQTT over WebSocket: an HTTP handler that upgrades a
// request (subprotocol "mqtt", binary messages) and hands the connection,
// as a net.Conn whose bytes are the MQTT stream, to the MQTT server.
//
// MQTT packets may be split across WebSocket messages or several may
// share one; the adapter only concatenates the messages' payloads, and
// the MQTT server frames packets as on TCP, with the same limits, auth
// and ACL. Each write of the server is one binary message.
package ws

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

// Subprotocol is the WebSocket subprotocol of MQTT: a client must offer
// it, and the handler selects it.
const Subprotocol = "mqtt"

// Config configures a Handler.
type Config struct {
	// Serve takes each upgraded connection (it owns it from then on).
	Serve func(net.Conn)
	// Origins lists the Origin header values a browser's request may
	// carry ("https://app.example.com"); empty: any origin. A request
	// without an Origin header (not from a browser) is always allowed:
	// MQTT clients log in with credentials in CONNECT, not cookies, so a
	// foreign page gains nothing a script could not do directly.
	Origins []string
	// MaxMessageBytes caps one WebSocket message (the MQTT server's
	// largest packet and a little more). A larger one closes the
	// connection (close code 1009). Default 256 KiB + 16.
	MaxMessageBytes int64
	// Logger gets the refusals, one line a second at most; nil:
	// slog.Default().
	Logger *slog.Logger
	// Registerer gets pushring_ws_* metrics; nil: not registered.
	Registerer prometheus.Registerer
}

// Reasons an upgrade or a connection is refused, the values of
// pushring_ws_refusals_total{reason}.
const (
	RefusedOrigin      = "origin"
	RefusedSubprotocol = "subprotocol"
	RefusedHandshake   = "handshake"
	RefusedText        = "text_message"
	RefusedTooLarge    = "message_too_large"
)

// Handler serves MQTT over WebSocket.
type Handler struct {
	cfg       Config
	up        websocket.Upgrader
	log       *slog.Logger
	accepted  prometheus.Counter
	refused   *prometheus.CounterVec
	logged    atomic.Int64 // unix ns of the last refusal logged
	writeBufs sync.Pool
}

// New returns a Handler for cfg.
func New(cfg Config) (*Handler, error) {
	if cfg.Serve == nil {
		return nil, errors.New("ws: Config.Serve is required")
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = 256<<10 + 16
	}
	h := &Handler{cfg: cfg, log: cfg.Logger}
	if h.log == nil {
		h.log = slog.Default()
	}
	h.accepted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pushring_ws_connections_total",
		Help: "MQTT over WebSocket connections upgraded and handed to the MQTT server.",
	})
	h.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushring_ws_refusals_total",
		Help: "MQTT over WebSocket upgrades refused (origin, subprotocol, handshake) and connections closed for a text or oversized message.",
	}, []string{"reason"})
	for _, r := range []string{RefusedOrigin, RefusedSubprotocol, RefusedHandshake, RefusedText, RefusedTooLarge} {
		h.refused.WithLabelValues(r)
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{h.accepted, h.refused} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("ws: %w", err)
			}
		}
	}
	h.up = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		Subprotocols:     []string{Subprotocol},
		CheckOrigin:      h.originAllowed,
		// The MQTT server buffers its own output; small frame buffers
		// keep an idle connection cheap.
		ReadBufferSize:  4 << 10,
		WriteBufferSize: 4 << 10,
		// A write buffer only while a message is written: an idle
		// connection holds none.
		WriteBufferPool: &h.writeBufs,
		Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
			h.refuse(RefusedHandshake, reason)
			writeJSONError(w, status, "websocket_handshake", reason.Error())
		},
	}
	return h, nil
}

func (h *Handler) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	return origin == "" || len(h.cfg.Origins) == 0 || slices.Contains(h.cfg.Origins, origin)
}

// ServeHTTP upgrades r and hands the connection to Config.Serve.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.originAllowed(r) {
		h.refuse(RefusedOrigin, fmt.Errorf("origin %q not allowed", r.Header.Get("Origin")))
		writeJSONError(w, http.StatusForbidden, "origin_not_allowed", "this origin may not open MQTT over WebSocket here")
		return
	}
	if !slices.Contains(websocket.Subprotocols(r), Subprotocol) {
		h.refuse(RefusedSubprotocol, errors.New("the client did not offer the mqtt subprotocol"))
		writeJSONError(w, http.StatusBadRequest, "subprotocol_required", `offer the WebSocket subprotocol "mqtt"`)
		return
	}
	c, err := h.up.Upgrade(w, r, nil)
	if err != nil {
		return // the Upgrader answered, counted and logged it
	}
	c.SetReadLimit(h.cfg.MaxMessageBytes)
	h.accepted.Inc()
	h.cfg.Serve(&conn{ws: c, h: h, remote: remoteAddr(r, c)})
}

// Dial opens MQTT over WebSocket to url (ws://host:port/path, or wss://
// with tlsConfig), offering the mqtt subprotocol, from the source IP
// localAddr unless empty, and returns the connection as the MQTT byte
// stream: the client side of what a Handler serves (load tests, tools).
func Dial(ctx context.Context, url string, tlsConfig *tls.Config, localAddr string) (net.Conn, error) {
	nd := &net.Dialer{}
	if localAddr != "" {
		ip := net.ParseIP(localAddr)
		if ip == nil {
			return nil, fmt.Errorf("ws: bad local address %q", localAddr)
		}
		nd.LocalAddr = &net.TCPAddr{IP: ip}
	}
	d := websocket.Dialer{
		NetDialContext:  nd.DialContext,
		TLSClientConfig: tlsConfig,
		Subprotocols:    []string{Subprotocol},
		ReadBufferSize:  4 << 10,
		WriteBufferSize: 4 << 10,
	}
	c, resp, err := d.DialContext(ctx, url, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("ws: dial %s: %w (HTTP %s)", url, err, resp.Status)
		}
		return nil, fmt.Errorf("ws: dial %s: %w", url, err)
	}
	if c.Subprotocol() != Subprotocol {
		c.Close()
		return nil, fmt.Errorf("ws: %s did not select the mqtt subprotocol", url)
	}
	return &conn{ws: c}, nil
}

// refuse counts a refusal and logs it, at most once a second; nil h (a
// dialed connection) does neither.
func (h *Handler) refuse(reason string, err error) {
	if h == nil {
		return
	}
	h.refused.WithLabelValues(reason).Inc()
	now := time.Now().UnixNano()
	if last := h.logged.Load(); now-last >= int64(time.Second) && h.logged.CompareAndSwap(last, now) {
		h.log.Warn("mqtt over websocket refused (see pushring_ws_refusals_total)", "reason", reason, "err", err)
	}
}

func writeJSONError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":{"code":%q,"message":%q}}`+"\n", code, msg)
}

// conn is a WebSocket connection as the MQTT byte stream. Read is called
// by one goroutine and Write by one other (the MQTT server's reader and
// writer), as the WebSocket library requires. h is nil on the client side
// (Dial).
type conn struct {
	ws      *websocket.Conn
	h       *Handler
	remote  net.Addr  // the request's RemoteAddr: a balancer's client, where a proxy in front says so
	r       io.Reader // the message being read; nil between messages
	closing atomic.Bool
}

func (c *conn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			kind, r, err := c.ws.NextReader()
			if err != nil {
				return 0, c.readErr(err)
			}
			if kind != websocket.BinaryMessage {
				c.h.refuse(RefusedText, errors.New("a text message (MQTT needs binary messages)"))
				c.closeWith(websocket.CloseUnsupportedData, "MQTT needs binary messages")
				return 0, errors.New("ws: text message")
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		if err != nil {
			return n, c.readErr(err)
		}
		return n, nil
	}
}

// readErr counts an oversized message and turns the end of the
// WebSocket into io.EOF, as a closed TCP connection reads.
func (c *conn) readErr(err error) error {
	if errors.Is(err, websocket.ErrReadLimit) {
		c.h.refuse(RefusedTooLarge, err)
		c.closeWith(websocket.CloseMessageTooBig, "message too large")
		return err
	}
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return io.EOF
	}
	return err
}

// closeWith ends the connection with code (a refused message), from the
// reading goroutine.
func (c *conn) closeWith(code int, text string) {
	if c.closing.CompareAndSwap(false, true) {
		c.finish(code, text)
	}
}

// finish sends a close frame with code, then reads and drops what the
// client still sends (up to a second, 1 MiB) before closing the socket:
// closed with unread bytes, it would reset, and the client might lose the
// close frame that says why (browsers and MQTT.js report a reset after a
// normal DISCONNECT as an error).
func (c *conn) finish(code int, text string) {
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
	nc := c.ws.UnderlyingConn()
	_ = nc.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.Copy(io.Discard, io.LimitReader(nc, 1<<20))
	_ = c.ws.Close()
}

func (c *conn) Write(p []byte) (int, error) {
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close ends the WebSocket as the protocol asks (finish, code 1000) on
// a goroutine of its own, and returns at once: the MQTT server may close
// under its locks, and a client that does not read would hold the close
// frame's write for up to a second.
func (c *conn) Close() error {
	if c.closing.CompareAndSwap(false, true) {
		go c.finish(websocket.CloseNormalClosure, "")
	}
	return nil
}

func (c *conn) LocalAddr() net.Addr  { return c.ws.LocalAddr() }
func (c *conn) RemoteAddr() net.Addr { return c.remote }

// remoteAddr is r.RemoteAddr, which the HTTP server in front may have
// set to the client behind a trusted balancer, or else the socket's peer.
func remoteAddr(r *http.Request, c *websocket.Conn) net.Addr {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return net.TCPAddrFromAddrPort(ap)
	}
	return c.RemoteAddr()
}
func (c *conn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *conn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }
func (c *conn) SetDeadline(t time.Time) error {
	return errors.Join(c.ws.SetReadDeadline(t), c.ws.SetWriteDeadline(t))
}
