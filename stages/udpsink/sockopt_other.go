//go:build !linux

package udpsink

import (
	"errors"
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

// gso: UDP_SEGMENT is Linux-only; elsewhere every datagram goes by sendmmsg.
type gso struct{}

func newGSO(*net.UDPConn) *gso      { return nil }
func (*gso) send([]byte, int) error { return errors.ErrUnsupported }
func gsoUnsupported(error) bool     { return true }
func gsoTooBig(error) bool          { return false }
