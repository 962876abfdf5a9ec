// Package mqttc is the load harness's lean MQTT 3.1.1 client, built on
// router/packet (the codec, standard library only). One goroutine reads a
// connection; the owner writes to it through a buffered writer. It is made
// for measurement, not for applications: no reconnects, no keep-alive
// (KeepAlive 0), no persistent sessions.
package mqttc

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/pushring/pushring/router/packet"
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
	inflight chan struct{} // QoS 1 publish window; nil if no QoS 1 publishing
}

// Options for Dial.
type Options struct {
	ClientID string
	Username string
	Password string
	Timeout  time.Duration // connect + CONNACK; default 10 s
	Inflight int           // QoS 1 publish window; default 16
	// LocalAddr, if set, is the source IP to dial from (e.g. 127.0.0.2), so
	// many connections do not run out of ephemeral ports on one address.
	LocalAddr string
	BufSize   int // read and write buffer size; default 32 KiB (idle clients: small)
}

// Dial connects, sends CONNECT (clean session, no keep-alive) and waits for
// CONNACK.
func Dial(addr string, o Options) (*Conn, error) {
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Inflight <= 0 {
		o.Inflight = 16
	}
	if o.BufSize <= 0 {
		o.BufSize = 32 << 10
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
	c := &Conn{
		nc:       nc,
		r:        packet.NewReaderSize(nc, 1<<20, o.BufSize),
		w:        bufio.NewWriterSize(nc, o.BufSize),
		inflight: make(chan struct{}, o.Inflight),
	}
	nc.SetDeadline(time.Now().Add(o.Timeout))
	c.buf = packet.AppendConnect(c.buf[:0], &packet.Connect{
		CleanSession: true,
		ClientID:     o.ClientID,
		Username:     o.Username,
		Password:     []byte(o.Password),
	})
	if _, err := nc.Write(c.buf); err != nil {
		nc.Close()
		return nil, err
	}
	h, body, err := c.r.ReadPacket()
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("reading CONNACK: %w", err)
	}
	_, code, err := packet.DecodeConnack(h, body, packet.V311)
	if err != nil {
		nc.Close()
		return nil, err
	}
	if code != packet.ConnAccepted {
		nc.Close()
		return nil, fmt.Errorf("CONNACK refused with code %d", code)
	}
	nc.SetDeadline(time.Time{})
	return c, nil
}

// Subscribe sends one SUBSCRIBE and waits for its SUBACK (call before Run).
func (c *Conn) Subscribe(filter string, qos byte, timeout time.Duration) error {
	c.nc.SetDeadline(time.Now().Add(timeout))
	defer c.nc.SetDeadline(time.Time{})
	c.buf = packet.AppendSubscribe(c.buf[:0], &packet.Subscribe{PacketID: 1, Filters: []packet.Subscription{{Filter: filter, QoS: qos}}})
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
		_, codes, err := packet.DecodeSuback(h, body, packet.V311)
		if err != nil {
			return err
		}
		if len(codes) != 1 || codes[0] == packet.SubackFailure {
			return errors.New("subscription refused")
		}
		return nil
	}
}

// Publish appends a PUBLISH to the write buffer (Flush sends it). At QoS 1
// it first waits for a free slot in the inflight window, which Run frees
// on PUBACK; it returns false if the connection closed meanwhile.
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
	c.buf = packet.AppendPublish(c.buf[:0], qos, false, false, id, payload, topic)
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
			if err := packet.DecodePublish(h, body, packet.V311, &p); err != nil {
				return err
			}
			if fn != nil {
				fn(p.Topic, p.Payload)
			}
			if p.QoS > 0 {
				ack = packet.AppendAck(ack[:0], packet.PUBACK, p.PacketID)
				aw.Write(ack)
			}
		case packet.PUBACK:
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
