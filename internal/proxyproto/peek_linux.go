package proxyproto

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// peek copies into p what has arrived on c without consuming it, waiting
// (up to c's read deadline) for at least a byte; ok is false where c is
// no socket it can peek.
func peek(c net.Conn, p []byte) (n int, ok bool, err error) {
	sc, isSock := c.(syscall.Conn)
	if !isSock {
		return 0, false, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, false, nil
	}
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), p, unix.MSG_PEEK)
		return rerr != unix.EAGAIN
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return 0, true, err
	}
	return n, true, nil
}
