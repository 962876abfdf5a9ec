//go:build unix

package api

import (
	"net"
	"syscall"
)

// refuseAnswer writes answer to c and reads away what the client already
// sent, each with one non-blocking system call: the accept loop must never
// wait on a refused client. A connection that is no socket gets nothing.
func refuseAnswer(c net.Conn, answer, buf []byte) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	// Returning true tells the runtime not to wait for the socket to be
	// ready: one attempt, whatever it gives.
	rc.Write(func(fd uintptr) bool {
		syscall.Write(int(fd), answer)
		return true
	})
	rc.Read(func(fd uintptr) bool {
		syscall.Read(int(fd), buf)
		return true
	})
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}
