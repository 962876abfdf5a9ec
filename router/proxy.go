package router

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/pushring/pushring/internal/proxyproto"
)

// proxiedConn is a connection a load balancer opened for a client: its
// RemoteAddr is the client's, from the PROXY header.
type proxiedConn struct {
	net.Conn
	remote net.Addr
}

func (c *proxiedConn) RemoteAddr() net.Addr { return c.remote }

// tcpConn is the socket under nc, for the event-loop transport.
func tcpConn(nc net.Conn) (*net.TCPConn, bool) {
	if pc, ok := nc.(*proxiedConn); ok {
		nc = pc.Conn
	}
	tc, ok := nc.(*net.TCPConn)
	return tc, ok
}

// trustedProxy: the peer of nc is one of TrustedProxies.
func (s *Server) trustedProxy(nc net.Conn) bool {
	ta, ok := nc.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return false
	}
	ip, _ := netip.AddrFromSlice(ta.IP)
	ip = ip.Unmap()
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// acceptProxied starts reading the PROXY header of a new connection off
// the accept loop; tc is nil on the plain listener. The connection then
// goes on as one accepted directly, with the client's address.
func (s *Server) acceptProxied(nc net.Conn, tc *tls.Config) {
	if !s.trustedProxy(nc) {
		s.refuseProxied(nc, reasonProxyUntrusted, "peer not in --trusted-proxies", nil)
		return
	}
	select {
	case s.handshakes <- struct{}{}:
	default:
		s.refuseProxied(nc, reasonProxyHeader, "too many connections being set up", errHandshakesBusy)
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
	go func() {
		defer s.wg.Done()
		nc := s.readProxyHeader(nc)
		if nc == nil {
			<-s.handshakes
			return
		}
		if tc == nil {
			<-s.handshakes
			s.accept(nc, viaTCP)
			return
		}
		if !s.allowConnect(nc) {
			<-s.handshakes
			return
		}
		s.tlsHandshake(nc, tc) // gives the slot back
	}()
}

// readProxyHeader reads nc's PROXY header within ConnectTimeout and
// returns the connection with the client's address, or nil (nc closed,
// refusal counted).
func (s *Server) readProxyHeader(nc net.Conn) net.Conn {
	nc.SetReadDeadline(time.Now().Add(s.cfg.ConnectTimeout))
	// Close cuts a read in progress short rather than wait for it.
	stop := context.AfterFunc(s.stopping, func() { nc.SetReadDeadline(time.Now()) })
	h, err := proxyproto.Read(nc)
	stop()
	if err == nil {
		err = nc.SetReadDeadline(time.Time{}) // the transport sets its own
	}
	if err != nil {
		// Close cut it short, or the peer left: a balancer's health check
		// connects and closes, and a stream that ends or is reset looks
		// the same as a dropped network (not counted, as for packets).
		if s.stopping.Err() != nil || peerLeft(err) {
			nc.Close()
			return nil
		}
		s.refuseProxied(nc, reasonProxyHeader, "no valid PROXY protocol header", err)
		return nil
	}
	if h.Local {
		return nc // the balancer's own check: its address stands
	}
	return &proxiedConn{Conn: nc, remote: net.TCPAddrFromAddrPort(h.Source)}
}

// refuseProxied closes a connection refused before its PROXY header
// was taken, counts it and logs at most a line a second.
func (s *Server) refuseProxied(nc net.Conn, reason, why string, err error) {
	nc.Close()
	s.m.refusal(reason)
	if ok, missed := s.proxyLog.Allow(time.Second); ok {
		args := []any{"reason", reason, "remote", nc.RemoteAddr().String(), "since_last_line", missed}
		if err != nil {
			args = append(args, "err", err.Error())
		}
		s.log.Warn("mqtt: connection refused: "+why+" (logged at most once a second; see pushring_mqtt_refusals_total)", args...)
	}
}

// peerLeft: err is the end of the stream or a reset, not bad input.
func peerLeft(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}
