//go:build !linux

package proxyproto

import "net"

// peek is not used here: readLine reads a byte a call.
func peek(net.Conn, []byte) (int, bool, error) { return 0, false, nil }
