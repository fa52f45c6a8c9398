//go:build !linux

package sockbuf

import "net"

// Send reports that the send buffer size cannot be read here.
func Send(*net.UDPConn) (int, bool) { return 0, false }

// Recv reports that the receive buffer size cannot be read here.
func Recv(*net.UDPConn) (int, bool) { return 0, false }
