//go:build !linux

package router

import "net"

// The event loop is Linux only (epoll); elsewhere every connection uses
// tcpTransport.

type eventLoops struct{}

func (eventLoops) stop() {}

func (*eventLoops) wakeHolding() {}

func newEventTransport(*Server, net.Conn) transportStarter { return nil }
