//go:build !linux

package udpbatch

import (
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
)

// Reader receives batches through x/net's ReadBatch (one datagram per call
// where the OS has no recvmmsg).
type Reader struct {
	pc   *ipv4.PacketConn
	last []Message
	n    int
}

// NewReader wraps c.
func NewReader(c *net.UDPConn) (*Reader, error) { return &Reader{pc: ipv4.NewPacketConn(c)}, nil }

// Read blocks until at least one datagram arrives and fills ms[:n].
func (r *Reader) Read(ms []Message) (int, error) {
	n, err := r.pc.ReadBatch(ms, 0)
	r.last, r.n = ms, max(n, 0)
	return n, err
}

// From returns the sender of datagram i of the last Read, or the zero AddrPort.
func (r *Reader) From(i int) netip.AddrPort {
	if i < 0 || i >= r.n {
		return netip.AddrPort{}
	}
	if a, ok := r.last[i].Addr.(*net.UDPAddr); ok {
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}
