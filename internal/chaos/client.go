package chaos

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pushring/pushring/mqtt/mqttc"
	"github.com/pushring/pushring/mqtt/packet"
)

// Liveness of the harness's MQTT connections: a ping every Ping, a
// connection silent for Silent (no packet, not even a PINGRESP) is dead.
// A SIGSTOPped node keeps its sockets open: only this finds it.
const (
	Ping      = time.Second
	Silent    = 3 * time.Second
	keepAlive = 3 // seconds, in CONNECT
	redial    = 200 * time.Millisecond
)

// Session is what a client connects with: a persistent session (clean
// session off) of ClientID, signed in as Username.
type Session struct {
	ClientID, Username, Password string
}

// Dial connects to the first of addrs that accepts the session, trying
// them in order and again every 200 ms; nil once quit is closed. present
// is the CONNACK's session present flag.
func Dial(addrs []string, s Session, quit <-chan struct{}) (c *mqttc.Conn, present bool) {
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
			present, code, err := conn.Connect(&packet.Connect{ClientID: s.ClientID, Username: s.Username, Password: []byte(s.Password),
				KeepAlive: keepAlive}, 2*time.Second)
			if err == nil && code == packet.ConnAccepted {
				return conn, present
			}
			conn.Abort()
		}
		select {
		case <-quit:
			return nil, false
		case <-time.After(redial):
		}
	}
}

// Record is one message of a Publisher.
type Record struct {
	Topic   string
	Payload []byte
	Made    time.Duration // when the publisher made it (since its epoch)
	Acked   time.Duration // when its PUBACK came; 0: none
	Sends   int           // how many times it was written (DUP after the first)
}

// Publisher publishes numbered QoS 1 messages at a steady rate over one
// connection with a persistent session, as a careful device does: it
// keeps every message until its PUBACK and, after a reconnect (through
// Addrs, the first first), re-sends the unacknowledged ones in their
// order, with DUP set, before any new one. Messages made while it is
// disconnected wait for the next connection. Only a PUBACK makes a
// message one the service owes its recipients: each message records when
// it was made and when its PUBACK came.
type Publisher struct {
	Session Session
	Addrs   []string
	Every   time.Duration // the pace: a message every Every
	Epoch   time.Time     // times are since it
	// Message is message seq's topic and payload.
	Message func(seq int) (topic string, payload []byte)

	mu       sync.Mutex
	msgs     []Record
	sent     int            // msgs[:sent] were written at least once
	inflight map[uint16]int // packet id → seq, awaiting PUBACK
	conns    int

	kick       chan struct{}
	stopMaking chan struct{}
	quit       chan struct{}
	made, done chan struct{}
}

// Start begins making messages and connecting.
func (p *Publisher) Start() {
	p.inflight = map[uint16]int{}
	p.kick = make(chan struct{}, 1)
	p.stopMaking, p.quit = make(chan struct{}), make(chan struct{})
	p.made, p.done = make(chan struct{}), make(chan struct{})
	go p.make()
	go p.run()
}

func (p *Publisher) make() {
	defer close(p.made)
	tick := time.NewTicker(p.Every)
	defer tick.Stop()
	for seq := 0; ; seq++ {
		topic, payload := p.Message(seq)
		p.mu.Lock()
		p.msgs = append(p.msgs, Record{Topic: topic, Payload: payload, Made: time.Since(p.Epoch)})
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

// Finish stops making messages, waits up to within for the PUBACKs of
// those made, and closes the connection. It may be called again.
func (p *Publisher) Finish(within time.Duration) {
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

func (p *Publisher) unacked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, m := range p.msgs {
		if m.Acked == 0 {
			n++
		}
	}
	return n
}

// Records returns a copy of the messages, in the order made (a message's
// index is its number).
func (p *Publisher) Records() []Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Record(nil), p.msgs...)
}

// Reconnects is how many times the publisher connected again.
func (p *Publisher) Reconnects() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return max(0, p.conns-1)
}

// Publishing returns an error naming the first of ps without a PUBACK
// yet; nil once each had one. A schedule's clock starts then: the
// devices' CONNECT (a key check) is not part of the first window.
func Publishing(ps ...*Publisher) error {
	for _, p := range ps {
		p.mu.Lock()
		acked := len(p.msgs) > 0 && p.msgs[0].Acked != 0
		p.mu.Unlock()
		if !acked {
			return fmt.Errorf("%s has no PUBACK yet", p.Session.ClientID)
		}
	}
	return nil
}

// StartTraffic starts ps and returns what ends them: each Finish(within)
// at once. It may be called more than once (a deferred cleanup).
func StartTraffic(within time.Duration, ps ...*Publisher) (stop func()) {
	for _, p := range ps {
		p.Start()
	}
	return sync.OnceFunc(func() {
		var wg sync.WaitGroup
		for _, p := range ps {
			wg.Go(func() { p.Finish(within) })
		}
		wg.Wait()
	})
}

// packetID is the packet id of message seq: fewer than 65,535 messages
// ever await their PUBACK at once, so ids never clash, and a re-sent
// message keeps its id (as MQTT asks of a persistent session).
func packetID(seq int) uint16 { return uint16(seq%65535) + 1 }

func (p *Publisher) run() {
	defer close(p.done)
	for {
		conn, _ := Dial(p.Addrs, p.Session, p.quit)
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
// made and pings every Ping, until the connection fails (false) or quit
// (true).
func (p *Publisher) serve(c *mqttc.Conn) bool {
	dead := make(chan error, 1)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			h, body, err := c.ReadPacket(Silent)
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
			now := time.Since(p.Epoch)
			p.mu.Lock()
			if seq, ok := p.inflight[id]; ok {
				delete(p.inflight, id)
				if p.msgs[seq].Acked == 0 {
					p.msgs[seq].Acked = now
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
			if resend && m.Acked != 0 {
				continue
			}
			id := packetID(seq)
			p.inflight[id] = seq
			m.Sends++
			buf = packet.AppendPublish(buf, 1, resend, false, id, m.Payload, m.Topic)
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
	ping := time.NewTicker(Ping)
	defer ping.Stop()
	pingreq := packet.AppendPingreq(nil)
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
			if err := c.WritePacket(pingreq, 2*time.Second); err != nil {
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

// Run connects m with a persistent session through addrs (home first),
// subscribes it to filter and records what it gets, reconnecting until
// Stop. Members of a large run use it rather than a full MQTT client
// library: one goroutine and one small buffer each.
func (m *Member) Run(addrs []string, s Session, filter string) {
	m.quit, m.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(m.done)
		for {
			conn, present := Dial(addrs, s, m.quit)
			if conn == nil {
				return
			}
			m.mu.Lock()
			if !present && len(m.conns) > 0 {
				m.notPresent++
			}
			m.mu.Unlock()
			m.Connected()
			if m.serve(conn, filter) {
				return
			}
			m.Lost()
		}
	}()
}

// Stop ends what Run started.
func (m *Member) Stop() {
	close(m.quit)
	<-m.done
}

// serve subscribes (again: harmless on a session that kept it, needed on
// one that did not) and reads deliveries, acknowledging each, until the
// connection fails (false) or quit (true). Everything is read by this one
// loop: a persistent session's backlog may come before the SUBACK.
func (m *Member) serve(conn *mqttc.Conn, filter string) bool {
	sub := packet.AppendSubscribe(nil, &packet.Subscribe{PacketID: 1, Filters: []packet.Subscription{{Filter: filter, QoS: 1}}})
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
			if !errors.As(err, &te) || !te.Timeout() || now.Sub(lastIn) > Silent {
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
				m.Receive(p.Topic, p.Payload, now.Sub(m.Epoch))
				if p.QoS > 0 {
					ack = packet.AppendAck(ack[:0], packet.PUBACK, p.PacketID)
					if conn.WritePacket(ack, 2*time.Second) != nil {
						conn.Abort()
						return false
					}
				}
			}
		}
		if now.Sub(lastPing) >= Ping {
			lastPing = now
			if conn.WritePacket(ping, 2*time.Second) != nil {
				conn.Abort()
				return false
			}
		}
	}
}
