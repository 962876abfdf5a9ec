package router

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/pushring/pushring/rules"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushring/pushring/internal/certs"
	"github.com/pushring/pushring/internal/configerr"
	"github.com/pushring/pushring/internal/lograte"
	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/mqtt/packet"
)

// ErrServerClosed is returned by Serve after Close. It wraps
// net.ErrClosed, so callers that check for a closed listener need not know
// it.
var ErrServerClosed = fmt.Errorf("router: server closed: %w", net.ErrClosed)

// Server is the MQTT server of one node. Create it with New; it is
// goroutine-safe.
type Server struct {
	cfg  Config
	auth Authenticator
	acl  ACL
	fwd  Forwarder
	afwd AckForwarder // fwd, if it is one
	msgs sync.Pool    // of *message.Message, lent to the Forwarder (see handlePublish)
	ids  *message.IDSource
	log  *slog.Logger
	tp   topics
	m    *metrics
	rate *connLimiter // nil: no per-address connect limit

	mu         sync.RWMutex
	closed     bool
	draining   bool // StopAccepting: no new connections or sessions (drain.go)
	listeners  []net.Listener
	conns      map[*mqttConn]struct{}  // every open connection
	nSessions  int                     // registered: in their principals' sessions (limits.go)
	byToken    map[string][]*mqttConn  // Identity.TokenHash → connections
	principals principalTable          // per-principal state: limits, sessions (limits.go)
	revoked    map[revokeKey]time.Time // revoked token hashes and dropped principals → when
	revokedQ   []revokedEntry          // the same, oldest first, for pruning

	pres presenceQueue // see SetPresence

	sessStore   SessionStore                                     // see SetSessionStore; set before Serve, then read-only
	claiming    map[sessKey]claimWait                            // under mu: sessions claimed and not yet registered, by sessionKey (durable.go)
	posStop     chan struct{}                                    // closed by Close: positionLoop ends
	ringEpoch   atomic.Uint64                                    // ring changes seen (RingChanged)
	ringRunning atomic.Bool                                      // a shared journal read after a ring change is running
	bal         balancer                                         // moving clients toward their homes (balance.go)
	redirect    atomic.Pointer[func(id string, tls bool) string] // SetRedirect's (balance.go)
	retained    Retainer                                         // SetRetained's (retain.go); nil: no retained messages
	rules       *rules.Rules                                     // SetTopicRules' (rules.go); nil: no rule topics
	topicIdx    topicIndex                                       // the sessions' topic filters (rules.go)
	memberOf    func(id string) []string                         // SetRetained's

	wg         sync.WaitGroup
	loops      eventLoops                    // the event-loop transport's pollers
	hold       outputHold                    // output held for a run of deliveries (batch.go)
	holdMax    time.Duration                 // the longest a poller holds output (holdMax; tests change it before the first connection)
	loopErr    sync.Once                     // the event loop could not start: logged once
	rateLog    lograte.Limiter               // connect-rate refusal log lines
	tlsLog     lograte.Limiter               // TLS handshake failure log lines
	proxyLog   lograte.Limiter               // PROXY protocol refusal log lines
	storeLog   lograte.Limiter               // store refusal log lines
	slowLog    lograte.Limiter               // slow consumers cut off
	backlogLog lograte.Limiter               // replays that dropped messages over the backlog bounds
	journalEnd atomic.Pointer[func() uint64] // SetJournalEnd
	handshakes chan struct{}                 // a slot per TLS handshake or PROXY header read in progress (MaxTLSHandshakes)
	// stopping is cancelled by Close: TLS handshakes in progress end.
	stopping context.Context
	stop     context.CancelFunc
	autoID   uint64        // under mu: assigned client ids
	connSeq  atomic.Uint32 // numbers the connections that log in (ConnInfo.Seq)
	// Under mu: what sessions held and had not delivered when the
	// server drained and closed (drain.go).
	unsentDropped, unsentStored, unsentSessions int

	// hookPacket, when set (tests only), is called with every inbound
	// packet before it is handled.
	hookPacket atomic.Pointer[func(header byte, body []byte)]
}

var (
	_ transport = (*tcpTransport)(nil)
	_ handler   = (*mqttConn)(nil)
	// *Server is the node's fanout.Deliverer (router must not import fanout).
	_ interface {
		Deliver(m *message.Message, recipients []string)
	} = (*Server)(nil)
)

// New returns a server; call Serve to accept clients. ids makes the ids of
// messages published by clients. Zero Config fields take their defaults
// (see Config). A Config New cannot run with, or a nil auth, acl, fwd or
// ids, is refused with an error matching ErrInvalidConfig.
func New(cfg Config, auth Authenticator, acl ACL, fwd Forwarder, ids *message.IDSource) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if auth == nil || acl == nil || fwd == nil || ids == nil {
		return nil, check.New("New needs an Authenticator, an ACL, a Forwarder and an IDSource (one is nil)")
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, configerr.Wrap(ErrInvalidConfig, err) // a Registerer that holds them already
	}
	afwd, _ := fwd.(AckForwarder)
	s := &Server{
		afwd:    afwd,
		cfg:     cfg,
		auth:    auth,
		acl:     acl,
		fwd:     fwd,
		ids:     ids,
		log:     cfg.Logger.With("component", "router"),
		tp:      newTopics(cfg),
		m:       m,
		rate:    newConnLimiter(cfg.ConnectRate, cfg.ConnectBurst),
		conns:   make(map[*mqttConn]struct{}),
		holdMax: holdMax,
		byToken: make(map[string][]*mqttConn),
		revoked: make(map[revokeKey]time.Time),
	}
	s.msgs.New = func() any { return new(message.Message) }
	s.stopping, s.stop = context.WithCancel(context.Background())
	s.handshakes = make(chan struct{}, cfg.MaxTLSHandshakes)
	return s, nil
}

// Serve accepts MQTT clients on ln until Close; it may be called for
// several listeners. It returns ErrServerClosed after Close, or the
// listener's error.
func (s *Server) Serve(ln net.Listener) error { return s.serve(ln, nil) }

// ServeTLS accepts MQTT-over-TLS clients on ln, a plain listener (TCP):
// each handshake runs on a goroutine of its own, bounded by
// TLSHandshakeTimeout, so a client that stalls or sends garbage delays
// no other; it is then cut off, counted
// (pushring_mqtt_tls_handshake_failures_total) and logged at most once a
// second. A connection whose handshake succeeds is served by a reader and
// a writer goroutine (the event loop reads raw sockets and cannot carry
// TLS). A client certificate verified by the handshake (cfg.ClientCAs
// with VerifyClientCertIfGiven or stricter) lets a device log in with it
// alone: see Authenticator.AuthenticateCert. It returns as Serve does.
func (s *Server) ServeTLS(ln net.Listener, cfg *tls.Config) error {
	if cfg == nil {
		ln.Close()
		return check.New("ServeTLS needs a tls.Config")
	}
	return s.serve(ln, cfg)
}

func (s *Server) serve(ln net.Listener, tc *tls.Config) error {
	s.mu.Lock()
	if s.stoppedLocked() {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()

	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.RLock()
			closed := s.stoppedLocked()
			s.mu.RUnlock()
			if closed {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("mqtt: accept failed, retrying", "err", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		if s.cfg.ProxyProtocol {
			s.acceptProxied(nc, tc)
		} else if tc != nil {
			s.acceptTLS(nc, tc)
		} else {
			s.accept(nc, viaTCP)
		}
	}
}

// acceptTLS starts the handshake of a new TLS connection off the accept
// loop.
func (s *Server) acceptTLS(nc net.Conn, cfg *tls.Config) {
	if !s.allowConnect(nc) {
		return
	}
	select {
	case s.handshakes <- struct{}{}:
	default:
		nc.Close()
		s.handshakeFailed(nc.RemoteAddr(), errHandshakesBusy)
		return
	}
	s.mu.Lock()
	if s.stoppedLocked() {
		s.mu.Unlock()
		<-s.handshakes
		nc.Close()
		return
	}
	s.wg.Add(1) // under mu, so Close's Wait cannot miss it
	s.mu.Unlock()
	go s.handshake(nc, cfg)
}

// errHandshakesBusy: MaxTLSHandshakes were in progress.
var errHandshakesBusy = errors.New("too many TLS handshakes in progress")

// handshake runs one TLS handshake, then starts the connection.
func (s *Server) handshake(nc net.Conn, cfg *tls.Config) {
	defer s.wg.Done()
	s.tlsHandshake(nc, cfg)
}

// tlsHandshake runs one TLS handshake holding a handshakes slot, gives
// the slot back, then starts the connection.
func (s *Server) tlsHandshake(nc net.Conn, cfg *tls.Config) {
	tc := tls.Server(nc, cfg)
	nc.SetDeadline(time.Now().Add(s.cfg.TLSHandshakeTimeout))
	err := tc.HandshakeContext(s.stopping)
	<-s.handshakes
	if err == nil {
		err = nc.SetDeadline(time.Time{}) // the transport sets its own
	}
	if err != nil {
		nc.Close()
		if s.stopping.Err() != nil {
			return // Close cut it short: not the client's failure
		}
		s.handshakeFailed(nc.RemoteAddr(), err)
		return
	}
	cs := tc.ConnectionState()
	t := newTLSTransport(s, tc)
	c := newMQTTConn(s, t)
	c.via = viaTLS
	if len(cs.VerifiedChains) > 0 {
		c.cert, c.certID = true, certs.PeerID(&cs)
	}
	s.m.tlsConns.Add(1) // the reader goroutine takes it back, or abort below
	if !s.startConn(c, t) {
		s.m.tlsConns.Add(-1)
	}
}

// handshakeFailed counts a failed TLS handshake and logs it at most once
// a second, so a flood of them costs a counter increment each.
func (s *Server) handshakeFailed(addr net.Addr, err error) {
	i := tlsError
	var ne net.Error
	switch {
	case errors.Is(err, errHandshakesBusy):
		i = tlsBusy
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		i = tlsTimeout
	}
	s.m.tlsFailures[i].Add(1)
	reason := tlsFailureReasons[i]
	if ok, missed := s.tlsLog.Allow(time.Second); ok {
		s.log.Warn("mqtt: TLS handshake failed (logged at most once a second; see pushring_mqtt_tls_handshake_failures_total)",
			"reason", reason, "remote", addr.String(), "err", err, "since_last_line", missed)
	}
}

// isTemporary: accept errors worth retrying (EMFILE and friends).
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// allowConnect applies the per-address connect rate; a refused
// connection is closed, counted and logged (at most once a second).
func (s *Server) allowConnect(nc net.Conn) bool {
	if ok, _ := s.rate.Allow(limiterKey(nc.RemoteAddr()), time.Now()); !ok {
		s.m.refusal(reasonConnectRate)
		s.logConnectRate(nc.RemoteAddr())
		nc.Close()
		return false
	}
	return true
}

// MaxPacketSize is the largest remaining length of an inbound packet
// (Config.MaxPacketSize).
func (s *Server) MaxPacketSize() int { return s.cfg.MaxPacketSize }

// ServeConn serves one client connection that came another way than a
// listener of the server (MQTT over WebSocket: the HTTP server accepted
// and upgraded it), with the same limits, auth and ACL, on a reader and
// a writer goroutine. The server owns nc from the call on; it is closed
// at once when the server is closing.
func (s *Server) ServeConn(nc net.Conn) { s.accept(nc, viaWebSocket) }

func (s *Server) accept(nc net.Conn, via byte) {
	if !s.allowConnect(nc) {
		return
	}
	t := newEventTransport(s, nc)
	if t == nil {
		t = newTCPTransport(s, nc)
	}
	c := newMQTTConn(s, t)
	c.via = via
	s.startConn(c, t)
}

// startConn registers c and starts its transport; false (t aborted) once
// the server is closed.
func (s *Server) startConn(c *mqttConn, t transportStarter) bool {
	s.mu.Lock()
	if s.stoppedLocked() {
		s.mu.Unlock()
		t.abort()
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(t.goroutines()) // under mu, so Close's Wait cannot miss it
	s.mu.Unlock()
	t.start(c)
	return true
}

// Close closes the listeners and every connection (without publishing
// wills: the node is going away, not the clients), and waits for the
// connection goroutines. Persistent sessions are dropped with the
// process; with a SessionStore their positions are saved first, and
// their stored messages are replayed wherever their clients resume
// them. What the sessions had not delivered is counted and logged once
// (drain.go). See StopAccepting and Drain for a graceful stop.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	s.stop() // handshakes in progress end
	lns := s.listeners
	conns := make([]*mqttConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	var err error
	for _, ln := range lns {
		if e := ln.Close(); e != nil && err == nil && !errors.Is(e, net.ErrClosed) {
			err = e
		}
	}
	for _, c := range conns {
		c.stopForwarding() // its client sends what it was not answered again
		c.kill(false, packet.CodeServerShuttingDown)
	}
	if s.posStop != nil {
		close(s.posStop)
	}
	s.wg.Wait()
	s.loops.stop()
	defer s.flushPresence()
	s.mu.Lock()
	for id, p := range s.principals.m {
		if len(p.sessions) > 0 {
			s.presenceLocked(id, false)
		}
	}
	s.savePositionsNow()
	var all []*session
	s.eachSessionLocked(func(sess *session) { all = append(all, sess) })
	for _, sess := range all {
		sess.mu.Lock()
		s.countUnsentLocked(sess)
		sess.release()
		sess.mu.Unlock()
	}
	s.logUnsent()
	for _, p := range s.principals.m {
		p.sessions = nil
	}
	s.nSessions = 0
	s.mu.Unlock()
	return err
}

// Addrs returns the addresses of the listeners being served.
func (s *Server) Addrs() []net.Addr {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]net.Addr, 0, len(s.listeners))
	for _, ln := range s.listeners {
		out = append(out, ln.Addr())
	}
	return out
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	st := s.m.stats()
	s.mu.RLock()
	st.Sessions = int64(s.nSessions)
	s.mu.RUnlock()
	return st
}

// Deliver gives m to every session on this node of each listed
// principal, connected or persistent offline (fanout.Deliverer). It never
// blocks on a client: what cannot be written at once is queued (bounded)
// or, for QoS 0, dropped. Goroutine-safe; m and recipients are not kept
// (m.Payload, immutable, is).
func (s *Server) Deliver(m *message.Message, recipients []string) {
	s.deliver(m, recipients, nil)
}

// deliver is Deliver, collecting in hc (when set) the backlogged
// sessions a QoS 1 publisher's confirmation should wait for (withhold.go).
func (s *Server) deliver(m *message.Message, recipients []string, hc *withholdCtx) {
	// The sessions are copied out so that Server.mu is not held while
	// waiting for a session's lock (held during a replay, see bind).
	var arr [16]*session
	for _, r := range recipients {
		s.mu.RLock()
		list := append(arr[:0], s.sessionsOf(r)...)
		s.mu.RUnlock()
		for i, sess := range list {
			sess.deliver(m, hc) // a session removed meanwhile ignores it
			list[i] = nil
		}
	}
}

// Revoke disconnects every connection authenticated with the session
// token whose hex SHA-256 is tokenHash (logout takes effect at once). Their
// wills are not published. The hash is also remembered (revokedTTL, at
// most maxRevoked hashes), so a connection that authenticated with the
// token just before the revoke and binds just after is refused (CONNACK
// 0x04) instead of missed. Goroutine-safe.
func (s *Server) Revoke(tokenHash string) {
	if tokenHash == "" {
		return
	}
	s.mu.Lock()
	s.revokeLocked(revokeKey{s: tokenHash}, time.Now())
	conns := slices.Clone(s.byToken[tokenHash])
	s.mu.Unlock()
	for _, c := range conns {
		s.log.Info("mqtt: session token revoked, disconnecting", "id", c.id.ID, "remote", c.remoteAddr())
		c.kill(false, packet.CodeNotAuthorized)
	}
}

// revokeKey is an entry of the revoked set: a token hash, or (principal)
// a principal id DropPrincipal dropped.
type revokeKey struct {
	s         string
	principal bool
}

// revokeLocked adds key to the revoked set. s.mu held.
func (s *Server) revokeLocked(key revokeKey, now time.Time) {
	s.revoked[key] = now
	s.revokedQ = append(s.revokedQ, revokedEntry{key: key, at: now})
	s.pruneRevokedLocked(now)
}

// The revoked set only has to cover the time between an Authenticate that
// still accepted a token and the bind after it (the Authenticator refuses
// a revoked token from then on), so a day, and a cap on its size, are
// ample.
const (
	revokedTTL = 24 * time.Hour
	maxRevoked = 1 << 16
)

type revokedEntry struct {
	key revokeKey
	at  time.Time
}

// pruneRevokedLocked forgets revoked hashes older than revokedTTL, and the
// oldest ones over maxRevoked. s.mu held.
func (s *Server) pruneRevokedLocked(now time.Time) {
	n := 0
	for n < len(s.revokedQ) {
		e := s.revokedQ[n]
		if len(s.revokedQ)-n <= maxRevoked && now.Sub(e.at) < revokedTTL {
			break
		}
		if s.revoked[e.key].Equal(e.at) {
			delete(s.revoked, e.key)
		}
		n++
	}
	if n > 0 {
		clear(s.revokedQ[:n])
		s.revokedQ = s.revokedQ[n:]
		if len(s.revokedQ) == 0 {
			s.revokedQ = nil
		}
	}
}

// isRevokedLocked reports whether key was revoked (and not yet
// forgotten). s.mu held.
func (s *Server) isRevokedLocked(key revokeKey) bool {
	if len(s.revoked) == 0 {
		return false
	}
	at, ok := s.revoked[key]
	return ok && time.Since(at) < revokedTTL
}

// panicked records a recovered panic.
func (s *Server) panicked(where string, r any, stack []byte) {
	s.m.panics.Add(1)
	s.log.Error("mqtt: panic recovered, closing the connection", "where", where, "panic", fmt.Sprint(r), "stack", string(stack))
}

// ---- session registry ----

// bind attaches connection c, authenticated as c.id, to its session
// (creating, resuming or taking it over) and writes preamble (CONNACK,
// or the auth-topic answer) before any replayed message. It returns a
// CONNACK refusal code, or 0: 0x04 for a token revoked since it was
// authenticated, 0x03 when the server is closed or full.
//
// Only the registration holds Server.mu; the replay of the session's
// inflight and queued messages holds the session's lock alone, which is
// taken before Server.mu is released, so nothing reaches the session
// before the preamble.
func (s *Server) bind(c *mqttConn, preamble func(buf []byte, present bool) []byte) byte {
	key := sessionKey(c.id.ID, c.clientID)
	if !c.claim(key) {
		s.claimDone(key)
		return 0x03 // the session store is unreachable: fail closed
	}
	defer c.unwatch(c.prewatch())
	sess, present, victim, code := s.register(c, key)
	s.claimDone(key)
	c.fresh = !present
	c.claimed = nil // read by register alone: an idle connection keeps none of it
	if code == 0 {
		sess.replay(func(buf []byte) []byte { return preamble(buf, present) })
		sess.mu.Unlock()
	}
	s.flushPresence()
	if victim != nil {
		// Takeover ([MQTT-3.1.4-2]): close the old connection. Its
		// will is published; its late close finds the session bound
		// to c and leaves it alone.
		s.log.Info("mqtt: session taken over", "id", c.id.ID, "client_id", c.clientID, "old_remote", victim.remoteAddr(), "remote", c.remoteAddr())
		victim.stopForwarding()
		victim.flags.set(flagTakenOver)
		victim.kill(true, packet.CodeSessionTakenOver)
	}
	return code
}

// register is bind's part under Server.mu: it finds, creates or takes
// over c's session, makes c its connection, and counts and indexes c. On
// success (code 0) it returns with sess.mu held; victim is the connection
// taken over, if any. A durable session resumed from the SessionStore,
// or whose queue dropped stored messages while offline, or outgrew the
// backlog bounds (bounds.go), starts a replay of the journal
// (durable.go).
func (s *Server) register(c *mqttConn, key sessKey) (sess *session, present bool, victim *mqttConn, code byte) {
	id := c.id.ID
	cl := c.claimed
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stoppedLocked() {
		return nil, false, nil, 0x03 // a client refused while the node drains tries its next address
	}
	// Presence: a takeover or a session dropped for the cap is not a
	// release when the principal still holds a session afterwards.
	held := len(s.sessionsOf(id)) > 0
	defer func() {
		if now := len(s.sessionsOf(id)) > 0; now != held {
			s.presenceLocked(id, now)
		}
	}()
	if c.id.TokenHash != "" && s.isRevokedLocked(revokeKey{s: c.id.TokenHash}) || s.isRevokedLocked(revokeKey{s: id, principal: true}) {
		return nil, false, nil, 0x04
	}
	if !c.counted && s.cfg.MaxConnections > 0 && s.m.connections.Load() >= int64(s.cfg.MaxConnections) {
		return nil, false, nil, 0x03
	}
	if cl != nil && s.claiming[key].kicked > cl.Gen {
		// Another node claimed the session after this claim, before it
		// was registered here: that claim's Kick found nothing to close.
		s.log.Info("mqtt: session claimed on another node while connecting; CONNECT refused", "id", id, "client_id", c.clientID, "remote", c.remoteAddr())
		return nil, false, nil, 0x03
	}
	sess = s.sessionLocked(key)
	if sess != nil {
		sess.mu.Lock()
		victim = sess.conn
		sess.conn = nil
		sess.offlineBacklog()
		// stale: another node claimed the session since this one did,
		// so what it holds here may miss what was delivered there; the
		// store's record is the session now.
		stale := cl != nil && sess.gen != cl.Prev
		if c.cleanStart || sess.clean || stale {
			sess.mu.Unlock()
			s.removeSessionLocked(sess, false)
			sess = nil
		} else {
			present = true
			if cl != nil {
				sess.gen = cl.Gen
			}
		}
	}
	from := uint64(0) // replay from, when set
	if sess == nil {
		if list := s.sessionsOf(id); len(list) >= s.cfg.MaxSessionsPerPrincipal {
			oldest := s.oldestOfflineLocked(list)
			if oldest == nil {
				return nil, false, nil, 0x03
			}
			if ok, _ := oldest.lim.sessLog.Allow(limitLogEvery); ok { // a client cycling client ids: once a minute
				s.log.Info("mqtt: session cap reached, dropping the oldest offline session", "id", id, "client_id", oldest.clientID)
			}
			s.endSessionLocked(oldest)
		}
		sess = newSession(s, id, c.clientID, c.clean)
		sess.device = c.id.Device
		s.nSessions++
		sess.lim.sessions = append(sess.lim.sessions, sess)
		sess.mu.Lock()
		if cl != nil && sess.resume(cl) {
			present, from = true, cl.Pos+1
		}
	} else if sess.floor != noFloor {
		from = sess.floor + 1
	} else if victim == nil && sess.queueOverBounds() {
		from = sess.maxSeq + 1 // replayLocked lowers it to the first queued
	}
	c.sess.Store(sess)
	sess.attach(c, c.level)
	if !sess.clean && s.sessStore != nil && s.homedElsewhere(id) {
		// Away from its home, the session gets its messages through the
		// home once its attach record (sent from attach) is there; the
		// home drops what it gets before. Those are in the journal: the
		// replay reads on until the record has had time to arrive, live
		// messages waiting meanwhile.
		if from == 0 {
			from = sess.maxSeq + 1
		}
		sess.tail = true
	}
	if from != 0 {
		sess.replayLocked(from)
	}

	if !c.counted {
		c.counted = true
		s.m.connUp()
	}
	if h := c.id.TokenHash; h != "" {
		s.byToken[h] = append(s.byToken[h], c)
	}
	return sess, present, victim, 0
}

// countConnected counts an auth-topic connection that got CONNACK 0 before
// it authenticated. It returns false over MaxConnections.
func (s *Server) countConnected(c *mqttConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stoppedLocked() || s.cfg.MaxConnections > 0 && s.m.connections.Load() >= int64(s.cfg.MaxConnections) {
		return false
	}
	c.counted = true
	s.m.connUp()
	return true
}

func (s *Server) oldestOfflineLocked(list []*session) *session {
	var oldest *session
	var since int64
	for _, sess := range list {
		sess.mu.Lock()
		if sess.conn == nil && (oldest == nil || sess.offlineSince < since) {
			oldest, since = sess, sess.offlineSince
		}
		sess.mu.Unlock()
	}
	return oldest
}

// removeSessionLocked drops sess from the registry and releases it,
// reporting a release to the Presence if it was the principal's last
// session and notify is set. s.mu held, sess.mu not held.
func (s *Server) removeSessionLocked(sess *session, notify bool) {
	p := sess.lim
	if i := slices.Index(p.sessions, sess); i >= 0 {
		s.nSessions--
		p.sessions = slices.Delete(p.sessions, i, i+1)
		if len(p.sessions) == 0 {
			p.sessions = nil // a principal that comes back makes a new one
			if notify {
				s.presenceLocked(sess.principal, false)
			}
		}
	}
	sess.mu.Lock()
	sess.release()
	sess.mu.Unlock()
}

// detach is the registry side of a connection closing: the session is
// dropped (clean) or kept offline (persistent), unless another connection
// took it over meanwhile, in which case nothing of it is touched.
func (s *Server) detach(c *mqttConn) {
	defer s.flushPresence() // runs after the Unlock below
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	if c.counted {
		c.counted = false
		s.m.connDown()
	}
	if h := c.id.TokenHash; h != "" {
		list := s.byToken[h]
		if i := slices.Index(list, c); i >= 0 {
			list = slices.Delete(list, i, i+1)
			if len(list) == 0 {
				delete(s.byToken, h)
			} else {
				s.byToken[h] = list
			}
		}
	}
	sess := c.sess.Load()
	if sess == nil {
		return
	}
	sess.mu.Lock()
	if sess.conn != c || sess.removed {
		sess.mu.Unlock()
		return
	}
	if sess.clean || s.closed || sess.lifetime <= 0 {
		if s.stoppedLocked() {
			s.countUnsentLocked(sess)
		}
		sess.mu.Unlock()
		if s.closed {
			s.removeSessionLocked(sess, true)
		} else {
			s.endSessionLocked(sess)
		}
		return
	}
	sess.conn = nil
	sess.offlineBacklog() // offline sessions are not waited for
	sess.offlineSince = time.Now().UnixNano()
	sess.offlineGen++
	gen := sess.offlineGen
	if sess.retry != nil {
		sess.retry.Stop()
		sess.retryArmed = false
	}
	sess.expiry = time.AfterFunc(sess.lifetime, func() { s.expire(sess, gen) })
	sess.mu.Unlock()
}

// expire drops a persistent session that stayed offline for its lifetime.
func (s *Server) expire(sess *session, gen uint64) {
	defer s.flushPresence() // runs after the Unlock below
	s.mu.Lock()
	defer s.mu.Unlock()
	sess.mu.Lock()
	stale := sess.removed || sess.conn != nil || sess.offlineGen != gen
	sess.mu.Unlock()
	if stale {
		return
	}
	s.log.Debug("mqtt: persistent session expired", "id", sess.principal, "client_id", sess.clientID)
	s.endSessionLocked(sess)
}

// endSessionLocked removes a session that ended (a clean session's
// connection closed, a persistent one expired or was evicted) and has
// the SessionStore forget it. s.mu held, sess.mu not held.
func (s *Server) endSessionLocked(sess *session) {
	sess.mu.Lock()
	gen := sess.gen
	sess.mu.Unlock()
	s.removeSessionLocked(sess, true)
	if s.sessStore != nil {
		s.sessStore.Release(sess.principal, sess.clientID, gen)
	}
}

// assignClientID makes a unique client id for an empty one with clean
// session = 1.
func (s *Server) assignClientID() string {
	s.mu.Lock()
	s.autoID++
	n := s.autoID
	s.mu.Unlock()
	return "auto-" + s.cfg.NodeID + "-" + strconv.FormatUint(n, 36) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
}

func (s *Server) putMessage(m *message.Message) {
	*m = message.Message{} // the payload is the read buffer: let go of it
	s.msgs.Put(m)
}

// forward hands a message published on this node to the cluster.
func (s *Server) forward(ctx context.Context, m *message.Message) error {
	return s.fwd.Forward(ctx, m)
}

// logConnectRate logs a refused connection at most once a second, so a
// storm costs a counter increment per connection, not a log line.
func (s *Server) logConnectRate(addr net.Addr) {
	if ok, missed := s.rateLog.Allow(time.Second); ok {
		s.log.Warn("mqtt: connection refused: connect rate per address exceeded", "remote", addr.String(), "since_last_line", missed)
	}
}
