//go:build !linux

package udpsource

import (
	"net"
	"syscall"
)

// sockOpts: outside Linux the system defaults apply (no buffer size, no
// shared multicast port).
type sockOpts struct {
	rcvbuf int
	reuse  bool
}

func (o sockOpts) control(string, string, syscall.RawConn) error { return nil }

func recvBuffer(*net.UDPConn) (int, bool) { return 0, false }
