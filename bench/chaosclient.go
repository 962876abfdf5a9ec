package bench

// The clients of the chaos scenario: members holding persistent sessions
// that reconnect through a list of nodes, and QoS 1 publishers that keep
// every message until its PUBACK and re-send it after a reconnect.

import (
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/pushring/pushring/mqtt/mqttc"
	"github.com/pushring/pushring/mqtt/packet"
)

// Liveness of the chaos clients' connections: a ping every chaosPing, a
// connection silent for chaosSilent (no packet, not even a PINGRESP) is
// dead. A SIGSTOPped node keeps its sockets open: only this finds it.
const (
	chaosPing      = time.Second
	chaosSilent    = 3 * time.Second
	chaosKeepAlive = 3 // seconds, in CONNECT
	chaosRedial    = 200 * time.Millisecond
)

// dialSession connects to the first of addrs that accepts the session
// (clean session off), trying them in order and again every chaosRedial;
// nil once quit is closed.
func dialSession(addrs []string, c Client, quit <-chan struct{}) (*mqttc.Conn, bool) {
	for {
		for _, a := range addrs {
			select {
			case <-quit:
				return nil, false
			default:
			}
			conn, err := mqttc.DialTCP(a, mqttc.Options{Timeout: 2 * time.Second, BufSize: 8 << 10})
			if err != nil {
				continue
			}
			present, code, err := conn.Connect(&packet.Connect{ClientID: c.ID, Username: c.Username, Password: []byte(c.Password),
				KeepAlive: chaosKeepAlive}, 2*time.Second)
			if err == nil && code == packet.ConnAccepted {
				return conn, present
			}
			conn.Abort()
		}
		select {
		case <-quit:
			return nil, false
		case <-time.After(chaosRedial):
		}
	}
}

// chaosArrival is one delivery to a member: 'g' group or 'd' direct, the
// message number, when (since the run's epoch).
type chaosArrival struct {
	kind byte
	seq  int32
	at   time.Duration
}

// chaosMember is one member device with a persistent session.
type chaosMember struct {
	idx         int
	c           Client
	addrs       []string // home first
	epoch       time.Time
	direct      string // the topic of direct messages to it
	groupPrefix string // group messages come on topics under it
	isTarget    func(seq int) bool

	mu         sync.Mutex
	got        []chaosArrival
	strays     int
	warm       bool
	notPresent int             // reconnects whose CONNACK had no session
	lost       []time.Duration // connection losses
	conns      []time.Duration // connections made

	quit, done chan struct{}
}

func (m *chaosMember) start() {
	m.quit, m.done = make(chan struct{}), make(chan struct{})
	go m.run()
}

func (m *chaosMember) stop() {
	close(m.quit)
	<-m.done
}

func (m *chaosMember) isWarm() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.warm
}

func (m *chaosMember) run() {
	defer close(m.done)
	for first := true; ; first = false {
		conn, present := dialSession(m.addrs, m.c, m.quit)
		if conn == nil {
			return
		}
		m.mu.Lock()
		m.conns = append(m.conns, time.Since(m.epoch))
		if !present && !first {
			m.notPresent++
		}
		m.mu.Unlock()
		if m.serve(conn) {
			return
		}
		m.mu.Lock()
		m.lost = append(m.lost, time.Since(m.epoch))
		m.mu.Unlock()
	}
}

// serve subscribes (again: harmless on a session that kept it, needed on
// one that did not) and reads deliveries, acknowledging each, until the
// connection fails (false) or quit (true). Everything is read by this one
// loop: a persistent session's backlog may come before the SUBACK.
func (m *chaosMember) serve(conn *mqttc.Conn) bool {
	sub := packet.AppendSubscribe(nil, &packet.Subscribe{PacketID: 1, Filters: []packet.Subscription{{Filter: m.c.Filter, QoS: 1}}})
	if conn.WritePacket(sub, 2*time.Second) != nil {
		conn.Abort()
		return false
	}
	ping := packet.AppendPingreq(nil)
	var ack []byte
	var p packet.Publish
	lastIn, lastPing := time.Now(), time.Now()
	for {
		select {
		case <-m.quit:
			conn.Close()
			return true
		default:
		}
		h, body, err := conn.ReadPacket(500 * time.Millisecond)
		now := time.Now()
		if err != nil {
			var te interface{ Timeout() bool }
			if !errors.As(err, &te) || !te.Timeout() || now.Sub(lastIn) > chaosSilent {
				conn.Abort()
				return false
			}
		} else {
			lastIn = now
			if h>>4 == packet.PUBLISH {
				if packet.DecodePublish(h, body, packet.V311, &p) != nil {
					conn.Abort()
					return false
				}
				m.receive(p.Topic, p.Payload, now.Sub(m.epoch))
				if p.QoS > 0 {
					ack = packet.AppendAck(ack[:0], packet.PUBACK, p.PacketID)
					if conn.WritePacket(ack, 2*time.Second) != nil {
						conn.Abort()
						return false
					}
				}
			}
		}
		if now.Sub(lastPing) >= chaosPing {
			lastPing = now
			if conn.WritePacket(ping, 2*time.Second) != nil {
				conn.Abort()
				return false
			}
		}
	}
}

// parseChaosPayload reads "<kind> <seq>" (kind g, d or w).
func parseChaosPayload(b []byte) (kind byte, seq int) {
	if len(b) < 3 || b[1] != ' ' {
		return 0, -1
	}
	n, err := strconv.Atoi(string(b[2:]))
	if err != nil || n < 0 {
		return 0, -1
	}
	return b[0], n
}

// receive records a delivery of payload b on topic at at: "g <n>" on the
// member's group topic, "d <n>" on its direct topic if direct message n is
// for it, "w <n>" (warm-up, not counted); anything else is a stray.
func (m *chaosMember) receive(topic, b []byte, at time.Duration) {
	kind, seq := parseChaosPayload(b)
	m.mu.Lock()
	defer m.mu.Unlock()
	group := len(topic) > len(m.groupPrefix) && string(topic[:len(m.groupPrefix)]) == m.groupPrefix
	switch {
	case kind == 'w' && group:
		m.warm = true
		return
	case kind == 'g' && seq >= 0 && group:
	case kind == 'd' && seq >= 0 && string(topic) == m.direct && m.isTarget(seq):
	default:
		m.strays++
		return
	}
	m.got = append(m.got, chaosArrival{kind, int32(seq), at})
}

// pubRecord is one message of a chaosPublisher.
type pubRecord struct {
	topic   string
	payload []byte
	made    time.Duration // when the publisher made it (since the epoch)
	acked   time.Duration // when its PUBACK came; 0: none
	sends   int           // how many times it was written (DUP after the first)
}

// chaosPublisher publishes numbered QoS 1 messages at a steady rate over
// one connection with a persistent session, as a careful device does: it
// keeps every message until its PUBACK and, after a reconnect (through
// addrs, the first first), re-sends the unacknowledged ones in their
// order, with DUP set, before any new one. Messages made while it is
// disconnected wait for the next connection. Only a PUBACK makes a
// message one the service owes its recipients.
type chaosPublisher struct {
	c       Client
	addrs   []string
	every   time.Duration
	epoch   time.Time
	message func(seq int) (topic string, payload []byte)

	mu       sync.Mutex
	msgs     []pubRecord
	sent     int            // msgs[:sent] were written at least once
	inflight map[uint16]int // packet id → seq, awaiting PUBACK
	conns    int

	kick       chan struct{}
	stopMaking chan struct{}
	quit       chan struct{}
	made, done chan struct{}
}

func (p *chaosPublisher) start() {
	p.inflight = map[uint16]int{}
	p.kick = make(chan struct{}, 1)
	p.stopMaking, p.quit = make(chan struct{}), make(chan struct{})
	p.made, p.done = make(chan struct{}), make(chan struct{})
	go p.make()
	go p.run()
}

func (p *chaosPublisher) make() {
	defer close(p.made)
	tick := time.NewTicker(p.every)
	defer tick.Stop()
	for seq := 0; ; seq++ {
		topic, payload := p.message(seq)
		p.mu.Lock()
		p.msgs = append(p.msgs, pubRecord{topic: topic, payload: payload, made: time.Since(p.epoch)})
		p.mu.Unlock()
		select {
		case p.kick <- struct{}{}:
		default:
		}
		select {
		case <-p.stopMaking:
			return
		case <-tick.C:
		}
	}
}

// finish stops making messages, waits up to within for the PUBACKs of
// those made, and closes the connection.
func (p *chaosPublisher) finish(within time.Duration) {
	select {
	case <-p.stopMaking:
	default:
		close(p.stopMaking)
	}
	<-p.made
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) && p.unacked() > 0 {
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-p.quit:
	default:
		close(p.quit)
	}
	<-p.done
}

func (p *chaosPublisher) unacked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, m := range p.msgs {
		if m.acked == 0 {
			n++
		}
	}
	return n
}

func (p *chaosPublisher) acked() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.msgs) > 0 && p.msgs[0].acked != 0
}

// records returns a copy of the messages.
func (p *chaosPublisher) records() []pubRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]pubRecord(nil), p.msgs...)
}

// chaosPacketID is the packet id of message seq: fewer than 65,535
// messages ever await their PUBACK at once, so ids never clash, and a
// re-sent message keeps its id (as MQTT asks of a persistent session).
func chaosPacketID(seq int) uint16 { return uint16(seq%65535) + 1 }

func (p *chaosPublisher) run() {
	defer close(p.done)
	for {
		conn, _ := dialSession(p.addrs, p.c, p.quit)
		if conn == nil {
			return
		}
		p.mu.Lock()
		p.conns++
		p.mu.Unlock()
		if p.serve(conn) {
			return
		}
	}
}

// serve re-sends what awaits a PUBACK, then sends messages as they are
// made and pings every chaosPing, until the connection fails (false) or
// quit (true).
func (p *chaosPublisher) serve(c *mqttc.Conn) bool {
	dead := make(chan error, 1)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			h, body, err := c.ReadPacket(chaosSilent)
			if err != nil {
				dead <- err
				return
			}
			if h>>4 != packet.PUBACK {
				continue
			}
			id, err := packet.DecodeAck(h, body, packet.V311)
			if err != nil {
				dead <- err
				return
			}
			now := time.Since(p.epoch)
			p.mu.Lock()
			if seq, ok := p.inflight[id]; ok {
				delete(p.inflight, id)
				if p.msgs[seq].acked == 0 {
					p.msgs[seq].acked = now
				}
			}
			p.mu.Unlock()
		}
	}()
	closeConn := func(graceful bool) {
		if graceful {
			c.Close()
		} else {
			c.Abort()
		}
		<-readerDone
	}
	var buf []byte
	// write sends messages from..to (re-sends: those not acknowledged).
	write := func(from, to int, resend bool) error {
		buf = buf[:0]
		p.mu.Lock()
		for seq := from; seq < to; seq++ {
			m := &p.msgs[seq]
			if resend && m.acked != 0 {
				continue
			}
			id := chaosPacketID(seq)
			p.inflight[id] = seq
			m.sends++
			buf = packet.AppendPublish(buf, 1, resend, false, id, m.payload, m.topic)
		}
		p.mu.Unlock()
		if len(buf) == 0 {
			return nil
		}
		return c.WritePacket(buf, 2*time.Second)
	}
	p.mu.Lock()
	resendTo := p.sent
	p.mu.Unlock()
	if err := write(0, resendTo, true); err != nil {
		closeConn(false)
		return false
	}
	ping := time.NewTicker(chaosPing)
	defer ping.Stop()
	for {
		select {
		case <-p.kick:
			p.mu.Lock()
			from, to := p.sent, len(p.msgs)
			p.sent = to
			p.mu.Unlock()
			if err := write(from, to, false); err != nil {
				closeConn(false)
				return false
			}
		case <-ping.C:
			if err := c.WritePacket(packet.AppendPingreq(nil), 2*time.Second); err != nil {
				closeConn(false)
				return false
			}
		case <-dead:
			closeConn(false)
			return false
		case <-p.quit:
			closeConn(true)
			return true
		}
	}
}
