//go:build !linux

package udpbatch

import (
	"fmt"
	"net"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Writer sends batches on one socket, normally a connected one (Addr nil).
type Writer struct {
	v4 *ipv4.PacketConn
	v6 *ipv6.PacketConn
}

// NewWriter wraps c, picking the IPv4 or IPv6 batch path by its local address.
func NewWriter(c *net.UDPConn) *Writer {
	if a, ok := c.LocalAddr().(*net.UDPAddr); ok && len(a.IP) == net.IPv6len && a.IP.To4() == nil {
		return &Writer{v6: ipv6.NewPacketConn(c)}
	}
	return &Writer{v4: ipv4.NewPacketConn(c)}
}

// Write sends every message in ms, looping over the partial sends sendmmsg
// may make. It stops at the first message that fails and returns how many
// went out before it with the error; the caller decides whether to skip the
// failed message (at index n) and go on.
func (w *Writer) Write(ms []Message) (n int, err error) {
	for n < len(ms) {
		var k int
		if w.v4 != nil {
			k, err = w.v4.WriteBatch(ms[n:], 0)
		} else {
			k, err = w.v6.WriteBatch(ms[n:], 0)
		}
		if k > 0 { // x/net passes the syscall's -1 through on error
			n += k
		}
		if err != nil {
			return n, fmt.Errorf("udpbatch: send: %w", err)
		}
		if k == 0 { // should not happen without an error; do not spin
			return n, fmt.Errorf("udpbatch: send made no progress")
		}
	}
	return n, nil
}
