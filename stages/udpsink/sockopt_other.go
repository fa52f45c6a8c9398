//go:build !linux

package udpsink

import (
	"net"
	"syscall"
)

// sockOpts: outside Linux only the send buffer is set here; multicast
// options keep the system defaults.
type sockOpts struct {
	sndbuf    int
	multicast bool
	ttl       int
	loop      bool
	ifi       *net.Interface
}

func (o sockOpts) control(string, string, syscall.RawConn) error { return nil }

func sendBuffer(*net.UDPConn) (int, bool) { return 0, false }
