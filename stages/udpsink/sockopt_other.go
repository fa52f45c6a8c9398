//go:build !linux

package udpsink

import (
	"errors"
	"net"
	"syscall"
)

// control: outside Linux the send buffer and multicast options keep the
// system defaults.
func (o sockOpts) control(string, string, syscall.RawConn) error { return nil }

// gso: UDP_SEGMENT is Linux-only; elsewhere every datagram goes by sendmmsg.
type gso struct{}

func newGSO(*net.UDPConn) *gso      { return nil }
func (*gso) send([]byte, int) error { return errors.ErrUnsupported }
func gsoUnsupported(error) bool     { return true }
func gsoTooBig(error) bool          { return false }
