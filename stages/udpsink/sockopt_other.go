//go:build !linux

package udpsink

import (
	"net"
	"syscall"
)

// control: outside Linux the send buffer and multicast options keep the
// system defaults.
func (o sockOpts) control(string, string, syscall.RawConn) error { return nil }

// gso: UDP_SEGMENT is Linux-only; elsewhere every datagram is its own message.
func gsoSupported(*net.UDPConn) bool       { return false }
func appendGSOCmsg(b []byte, _ int) []byte { return b }
func gsoUnsupported(error) bool            { return true }
func gsoTooBig(error) bool                 { return false }

const gsoCmsgSpace = 0
