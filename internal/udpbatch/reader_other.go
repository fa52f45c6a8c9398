//go:build !linux

package udpbatch

import (
	"net"

	"golang.org/x/net/ipv4"
)

// Reader receives batches through x/net's ReadBatch (one datagram per call
// where the OS has no recvmmsg).
type Reader struct{ pc *ipv4.PacketConn }

// NewReader wraps c.
func NewReader(c *net.UDPConn) (*Reader, error) { return &Reader{pc: ipv4.NewPacketConn(c)}, nil }

// Read blocks until at least one datagram arrives and fills ms[:n].
func (r *Reader) Read(ms []Message) (int, error) { return r.pc.ReadBatch(ms, 0) }
