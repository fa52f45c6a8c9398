package udpbatch

import (
	"fmt"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Writer sends batches on one socket with sendmmsg, normally a connected one
// (Message.Addr nil). It is for one goroutine at a time. It makes the system call itself, raw: sending on a
// non-blocking socket never blocks, and a call through the runtime's
// syscall entry would wake its monitor thread (sysmon) on every batch of
// an otherwise idle process, a context switch that costs more here than
// the send (docs/performance.md, "What limits the fan-out now").
type Writer struct {
	rc    syscall.RawConn
	rcErr error
	headers

	// state of the call in flight; fn is bound once so Write does not allocate.
	big   bool // a batch over rawMax bytes: through the runtime's syscall entry
	k     int
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

// NewWriter wraps c.
func NewWriter(c *net.UDPConn) *Writer {
	w := &Writer{}
	w.rc, w.rcErr = c.SyscallConn()
	w.fn = w.send
	return w
}

func (w *Writer) send(fd uintptr) bool {
	var n uintptr
	var e syscall.Errno
	for {
		if w.big {
			n, _, e = unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&w.hs[w.k])), uintptr(len(w.hs)-w.k), unix.MSG_DONTWAIT, 0, 0)
		} else {
			n, _, e = unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&w.hs[w.k])), uintptr(len(w.hs)-w.k), unix.MSG_DONTWAIT, 0, 0)
		}
		if e != unix.EINTR {
			break
		}
	}
	if e == unix.EAGAIN || e == unix.EWOULDBLOCK {
		return false // socket buffer full: wait for the poller
	}
	w.n, w.errno = int(n), e
	return true
}

// Write sends every message in ms, looping over the partial sends sendmmsg
// may make. It stops at the first message that fails and returns how many
// went out before it with the error; the caller decides whether to skip the
// failed message (at index n) and go on.
func (w *Writer) Write(ms []Message) (n int, err error) {
	if w.rcErr != nil {
		return 0, fmt.Errorf("udpbatch: send: %w", w.rcErr)
	}
	if len(ms) == 0 {
		return 0, nil
	}
	w.fill(ms)
	for w.k = 0; w.k < len(ms); {
		w.n, w.errno = 0, 0
		if err := w.rc.Write(w.fn); err != nil {
			return w.k, fmt.Errorf("udpbatch: send: %w", err)
		}
		if w.errno != 0 {
			return w.k, fmt.Errorf("udpbatch: send: %w", os.NewSyscallError("sendmmsg", w.errno))
		}
		if w.n == 0 { // should not happen without an error; do not spin
			return w.k, fmt.Errorf("udpbatch: send made no progress")
		}
		w.k += w.n
	}
	return len(ms), nil
}

// fill builds the mmsghdrs for ms in w's own arrays, so the buffers'
// addresses are all the kernel sees.
func (w *Writer) fill(ms []Message) {
	total := w.build(ms)
	for i := range ms {
		h := &w.hs[i]
		if a, ok := ms[i].Addr.(*net.UDPAddr); ok && a != nil {
			if l := putSockaddr(&w.names[i], a); l > 0 {
				h.hdr.Name = (*byte)(unsafe.Pointer(&w.names[i]))
				h.hdr.Namelen = l
			}
		}
		if len(ms[i].OOB) > 0 {
			h.hdr.Control = &ms[i].OOB[0]
			h.hdr.SetControllen(len(ms[i].OOB))
		}
	}
	w.big = total > rawMax
}

// rawMax bounds the bytes of a raw send: a raw call holds its P for as
// long as the kernel copies (and on loopback delivers), and the runtime
// cannot stop the world meanwhile. udp-sink's default batch (64 datagrams
// of ~1200 bytes) is a tenth of it.
const rawMax = 1 << 20

// putSockaddr writes a as a sockaddr_in or sockaddr_in6 into sa and returns
// its length, 0 when a has no usable address.
func putSockaddr(sa *unix.RawSockaddrInet6, a *net.UDPAddr) uint32 {
	port := uint16(a.Port)
	if ip4 := a.IP.To4(); ip4 != nil {
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*s4 = unix.RawSockaddrInet4{Family: unix.AF_INET}
		s4.Port = port<<8 | port>>8
		copy(s4.Addr[:], ip4)
		return unix.SizeofSockaddrInet4
	}
	if len(a.IP) != net.IPv6len {
		return 0
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6}
	sa.Port = port<<8 | port>>8
	copy(sa.Addr[:], a.IP)
	return unix.SizeofSockaddrInet6
}
