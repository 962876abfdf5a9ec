// Package mqttc is a lean raw MQTT 3.1.1 client on the codec mqtt/packet
// (standard library only). It serves two kinds of callers with one set of
// primitives:
//
//   - the load harness: Dial, Subscribe, Publish/Flush from one goroutine
//     and Run, a read loop that acknowledges QoS 1 deliveries, in another;
//   - tests that speak MQTT byte by byte: DialTCP (no CONNECT), Connect,
//     WritePacket (any bytes, well-formed or hostile) and ReadPacket.
//
// It is made for measurement and tests, not for applications: no
// reconnects and no keep-alive pings.
package mqttc

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/pushring/pushring/mqtt/packet"
	"github.com/pushring/pushring/mqtt/ws"
)

// Conn is one MQTT connection. Write methods are not safe for concurrent
// use: one goroutine writes (Publish, Flush), the read loop (Run) only
// answers PUBLISHes with PUBACKs through its own buffer.
type Conn struct {
	nc  net.Conn
	r   *packet.Reader
	w   *bufio.Writer
	buf []byte

	nextID   uint16
	inflight chan struct{} // QoS 1 and 2 publish window; nil if no QoS 1 or 2 publishing
	level    byte          // protocol level: packet.V311, or packet.V5 with Options.MQTT5
	props    packet.PublishProps
}

// Options for Dial and DialTCP.
type Options struct {
	ClientID string
	Username string
	Password string
	Timeout  time.Duration // dial, and Dial's CONNECT + CONNACK; default 10 s
	Inflight int           // QoS 1 publish window; default 16
	// LocalAddr, if set, is the source IP to dial from (e.g. 127.0.0.2), so
	// many connections do not run out of ephemeral ports on one address.
	LocalAddr string
	BufSize   int // read and write buffer size; default 32 KiB (idle clients: small)
	// TLS, if set, makes Dial and DialTCP speak MQTT over TLS with it
	// (the handshake is done within Timeout before they return). Nil:
	// plain TCP.
	TLS *tls.Config
	// WebSocket, if set (a path: "/mqtt"), makes Dial and DialTCP speak
	// MQTT over WebSocket to ws://addr/path (wss:// with TLS).
	WebSocket string
	// Persistent makes Dial ask for a persistent session (CleanSession
	// false): the server keeps the subscriptions and queues QoS 1
	// messages while the client is away. Default: clean session.
	Persistent bool
	// MQTT5 makes the client speak MQTT 5.0 (Dial's CONNECT, Subscribe,
	// Publish and Run); default 3.1.1.
	MQTT5 bool
}

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Inflight <= 0 {
		o.Inflight = 16
	}
	if o.BufSize <= 0 {
		o.BufSize = 32 << 10
	}
	return o
}

// Dial connects, sends CONNECT (clean session unless o.Persistent, no
// keep-alive) and waits for CONNACK 0.
func Dial(addr string, o Options) (*Conn, error) {
	o = o.withDefaults()
	c, err := DialTCP(addr, o)
	if err != nil {
		return nil, err
	}
	cp := &packet.Connect{
		ProtocolLevel: c.level,
		CleanSession:  !o.Persistent,
		ClientID:      o.ClientID,
		Username:      o.Username,
		Password:      []byte(o.Password),
	}
	if o.MQTT5 && o.Persistent {
		cp.Props.SessionExpiry = 1<<32 - 1 // as long as the server keeps any
		cp.Props.Set(packet.PropSessionExpiry)
	}
	_, code, err := c.Connect(cp, o.Timeout)
	if err == nil && code != packet.ConnAccepted {
		err = fmt.Errorf("CONNACK refused with code %d", code)
	}
	if err != nil {
		c.nc.Close()
		return nil, err
	}
	return c, nil
}

// DialTCP opens the connection and sends nothing: the caller writes the
// first packet (Connect, or any bytes through WritePacket).
func DialTCP(addr string, o Options) (*Conn, error) {
	o = o.withDefaults()
	if o.WebSocket != "" {
		scheme := "ws://"
		if o.TLS != nil {
			scheme = "wss://"
		}
		ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
		defer cancel()
		nc, err := ws.Dial(ctx, scheme+addr+o.WebSocket, o.TLS, o.LocalAddr)
		if err != nil {
			return nil, err
		}
		return New(nc, o), nil
	}
	d := net.Dialer{Timeout: o.Timeout}
	if o.LocalAddr != "" {
		ip := net.ParseIP(o.LocalAddr)
		if ip == nil {
			return nil, fmt.Errorf("bad local address %q", o.LocalAddr)
		}
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if o.TLS != nil {
		tc := tls.Client(nc, o.TLS)
		tc.SetDeadline(time.Now().Add(o.Timeout))
		if err := tc.Handshake(); err != nil {
			nc.Close()
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		tc.SetDeadline(time.Time{})
		nc = tc
	}
	return New(nc, o), nil
}

// New makes a client of a connection the caller opened (with socket
// options of its own, say); like DialTCP it sends nothing.
func New(nc net.Conn, o Options) *Conn {
	o = o.withDefaults()
	level := packet.V311
	if o.MQTT5 {
		level = packet.V5
	}
	return &Conn{
		nc:       nc,
		r:        packet.NewReaderSize(nc, maxPacket, o.BufSize),
		w:        bufio.NewWriterSize(nc, o.BufSize),
		inflight: make(chan struct{}, o.Inflight),
		level:    level,
	}
}

// maxPacket is the largest packet the client reads.
const maxPacket = 1 << 20

// Connect sends p as the CONNECT (protocol MQTT 3.1.1 unless p names
// another) and reads the CONNACK, both within timeout. A refusal is a
// code, not an error: tests look at it.
func (c *Conn) Connect(p *packet.Connect, timeout time.Duration) (sessionPresent bool, code byte, err error) {
	c.nc.SetDeadline(time.Now().Add(timeout))
	defer c.nc.SetDeadline(time.Time{})
	c.buf = packet.AppendConnect(c.buf[:0], p)
	if _, err := c.nc.Write(c.buf); err != nil {
		return false, 0, err
	}
	h, body, err := c.r.ReadPacket()
	if err != nil {
		return false, 0, fmt.Errorf("reading CONNACK: %w", err)
	}
	level := p.ProtocolLevel
	if level == 0 {
		level = packet.V311
	}
	return packet.DecodeConnack(h, body, level)
}

// WritePacket writes b (one or more packets, or any bytes) to the socket
// at once, bypassing the Publish buffer, within timeout.
func (c *Conn) WritePacket(b []byte, timeout time.Duration) error {
	c.nc.SetWriteDeadline(time.Now().Add(timeout))
	defer c.nc.SetWriteDeadline(time.Time{})
	_, err := c.nc.Write(b)
	return err
}

// ReadPacket returns the next packet read within timeout; body is valid
// until the next read. After a timeout the connection stays usable and a
// packet that was arriving is kept, so a test can assert a quiet period
// and go on; any other error is final.
func (c *Conn) ReadPacket(timeout time.Duration) (header byte, body []byte, err error) {
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	defer c.nc.SetReadDeadline(time.Time{})
	header, body, err = c.r.ReadPacket()
	if err != nil {
		c.r.Resume()
	}
	return header, body, err
}

// LocalAddr is the client's end of the connection.
func (c *Conn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// NetConn is the connection itself, for socket options; reading or
// writing it directly bypasses the client's buffers.
func (c *Conn) NetConn() net.Conn { return c.nc }

// Subscribe sends one SUBSCRIBE and waits for its SUBACK (call before Run).
func (c *Conn) Subscribe(filter string, qos byte, timeout time.Duration) error {
	c.nc.SetDeadline(time.Now().Add(timeout))
	defer c.nc.SetDeadline(time.Time{})
	s := &packet.Subscribe{PacketID: 1, Filters: []packet.Subscription{{Filter: filter, QoS: qos}}}
	if c.level == packet.V5 {
		c.buf = packet.AppendSubscribeV5(c.buf[:0], s)
	} else {
		c.buf = packet.AppendSubscribe(c.buf[:0], s)
	}
	if _, err := c.nc.Write(c.buf); err != nil {
		return err
	}
	for {
		h, body, err := c.r.ReadPacket()
		if err != nil {
			return fmt.Errorf("reading SUBACK: %w", err)
		}
		if h>>4 != packet.SUBACK {
			continue
		}
		_, codes, err := packet.DecodeSuback(h, body, c.level)
		if err != nil {
			return err
		}
		if len(codes) != 1 || codes[0] >= packet.SubackFailure {
			return errors.New("subscription refused")
		}
		return nil
	}
}

// Publish appends a PUBLISH to the write buffer (Flush sends it). At QoS 1
// and 2 it first waits for a free slot in the inflight window, which Run
// frees on PUBACK or PUBCOMP (answering PUBREC with PUBREL); it returns
// false if the connection closed meanwhile.
func (c *Conn) Publish(topic string, qos byte, payload []byte, done <-chan struct{}) bool {
	var id uint16
	if qos > 0 {
		select {
		case c.inflight <- struct{}{}:
		default:
			c.w.Flush() // let the window drain
			select {
			case c.inflight <- struct{}{}:
			case <-done:
				return false
			}
		}
		c.nextID++
		if c.nextID == 0 {
			c.nextID = 1
		}
		id = c.nextID
	}
	var pp *packet.PublishProps
	if c.level == packet.V5 {
		pp = &c.props
	}
	c.buf = packet.AppendPublishV5(c.buf[:0], qos, false, false, id, pp, payload, topic)
	_, err := c.w.Write(c.buf)
	return err == nil
}

// Flush writes buffered packets.
func (c *Conn) Flush() error { return c.w.Flush() }

// Inflight is the number of QoS 1 PUBLISHes awaiting PUBACK.
func (c *Conn) Inflight() int { return len(c.inflight) }

// Close closes the socket (after a best-effort DISCONNECT).
func (c *Conn) Close() error {
	c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	c.w.Flush()
	c.nc.Write(packet.AppendDisconnect(nil))
	return c.nc.Close()
}

// Run reads packets until the connection fails or closes: each PUBLISH is
// handed to fn (topic and payload valid only during the call) and, at
// QoS 1, acknowledged (PUBACKs are coalesced: flushed when no more input
// is buffered); each PUBACK frees a slot of the publish window.
func (c *Conn) Run(fn func(topic, payload []byte)) error {
	aw := bufio.NewWriterSize(c.nc, 4<<10)
	var ack []byte
	var p packet.Publish
	for {
		h, body, err := c.r.ReadPacket()
		if err != nil {
			return err
		}
		switch h >> 4 {
		case packet.PUBLISH:
			if err := packet.DecodePublish(h, body, c.level, &p); err != nil {
				return err
			}
			if fn != nil {
				fn(p.Topic, p.Payload) // QoS 2 too: delivered at once, as most clients do
			}
			switch p.QoS {
			case 1:
				ack = packet.AppendAck(ack[:0], packet.PUBACK, p.PacketID)
				aw.Write(ack)
			case 2:
				ack = packet.AppendAck(ack[:0], packet.PUBREC, p.PacketID)
				aw.Write(ack)
			}
		case packet.PUBREL: // the server released a QoS 2 message it sent
			if pid, err := packet.DecodeAck(h, body, c.level); err == nil {
				ack = packet.AppendAck(ack[:0], packet.PUBCOMP, pid)
				aw.Write(ack)
			}
		case packet.PUBREC: // a QoS 2 publish of ours was received
			if pid, err := packet.DecodeAck(h, body, c.level); err == nil {
				ack = packet.AppendAck(ack[:0], packet.PUBREL, pid)
				aw.Write(ack)
			}
		case packet.PUBACK, packet.PUBCOMP: // a QoS 1 or 2 publish of ours is done
			select {
			case <-c.inflight:
			default:
			}
		}
		if aw.Buffered() > 0 && c.r.Buffered() == 0 {
			if err := aw.Flush(); err != nil {
				return err
			}
		}
	}
}

// Abort closes the socket at once, without DISCONNECT: it unblocks a
// writer stuck on a server that stopped reading. Safe to call from any
// goroutine.
func (c *Conn) Abort() error { return c.nc.Close() }
