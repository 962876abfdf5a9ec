//go:build !unix

package api

import "net"

// refuseAnswer does nothing where a non-blocking write is not at hand: the
// refused connection is only closed.
func refuseAnswer(net.Conn, []byte, []byte) {}
