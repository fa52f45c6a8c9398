package udpbatch

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Reader receives batches with recvmmsg into the caller's buffers. Unlike
// x/net's ReadBatch it leaves Message.Addr nil (a net.Addr per datagram
// would allocate): the sender's address is kept raw and decoded by From.
type Reader struct {
	rc      syscall.RawConn
	headers // names[i] is the sender of datagram i

	// state of the call in flight; fn is bound once so Read does not allocate.
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

// NewReader wraps c.
func NewReader(c *net.UDPConn) (*Reader, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("udpbatch: %w", err)
	}
	r := &Reader{rc: rc}
	r.fn = r.recv
	return r, nil
}

func (r *Reader) recv(fd uintptr) bool {
	var n uintptr
	var e syscall.Errno
	for {
		n, _, e = unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hs[0])), uintptr(len(r.hs)), unix.MSG_DONTWAIT, 0, 0)
		if e != unix.EINTR {
			break
		}
	}
	if e == unix.EAGAIN || e == unix.EWOULDBLOCK {
		return false // wait for the poller
	}
	r.n, r.errno = int(n), e
	return true
}

// Read blocks until at least one datagram arrives (or the socket's read
// deadline passes, or it is closed) and fills ms[:n]: N is the datagram's
// length, Flags its receive flags (MSG_TRUNC when the buffers were short).
func (r *Reader) Read(ms []Message) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	r.build(ms)
	for i := range r.hs {
		r.hs[i].hdr.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		r.hs[i].hdr.Namelen = unix.SizeofSockaddrInet6
	}
	r.n, r.errno = 0, 0
	if err := r.rc.Read(r.fn); err != nil {
		return 0, err
	}
	if r.errno != 0 {
		r.n = 0
		return 0, os.NewSyscallError("recvmmsg", r.errno)
	}
	for i := 0; i < r.n; i++ {
		ms[i].N = int(r.hs[i].len)
		ms[i].NN = 0
		ms[i].Flags = int(r.hs[i].hdr.Flags)
		ms[i].Addr = nil
	}
	return r.n, nil
}

// From returns the sender of datagram i of the last Read (IPv4-mapped
// addresses unmapped; the IPv6 zone left out), or the zero AddrPort.
func (r *Reader) From(i int) netip.AddrPort {
	if i < 0 || i >= r.n || i >= len(r.names) {
		return netip.AddrPort{}
	}
	sa := &r.names[i]
	switch {
	case sa.Family == unix.AF_INET && r.hs[i].hdr.Namelen >= unix.SizeofSockaddrInet4:
		v4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(v4.Addr), netPort(v4.Port))
	case sa.Family == unix.AF_INET6 && r.hs[i].hdr.Namelen >= unix.SizeofSockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), netPort(sa.Port))
	}
	return netip.AddrPort{}
}

// netPort reads a port kept in network byte order in a raw sockaddr.
func netPort(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}
