package udpsource

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/mediapipe/mediapipe/stages/internal/sockbuf"
)

// control sets o before bind.
func (o sockOpts) control(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		if o.reuse {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		}
		if o.rcvbuf > 0 && serr == nil {
			serr = sockbuf.SetRecv(fd, o.rcvbuf)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// skMeminfoDrops is SK_MEMINFO_DROPS, the index in SO_MEMINFO's array of
// the datagrams the kernel dropped for the socket, mostly because its
// receive buffer was full (a burst longer than read_buffer).
const skMeminfoDrops = 8

// dropReader reads the kernel's drop count of one socket. It is made once
// per socket with its callback bound, because a closure per read cost three
// allocations (it and the two values it captured) every housekeeping tick.
type dropReader struct {
	rc syscall.RawConn
	fn func(fd uintptr) // d.read
	v  [skMeminfoDrops + 1]uint32
	l  uint32
	ok bool
}

func newDropReader(rc syscall.RawConn) *dropReader {
	d := &dropReader{rc: rc}
	d.fn = d.read
	return d
}

func (d *dropReader) read(fd uintptr) {
	d.l = uint32(unsafe.Sizeof(d.v))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&d.v[0])), uintptr(unsafe.Pointer(&d.l)), 0)
	d.ok = e == 0 && d.l >= uint32(unsafe.Sizeof(d.v))
}

// drops reads how many datagrams the kernel has dropped for the socket (a
// wrapping count); ok is false where the kernel cannot say.
func (d *dropReader) drops() (n uint32, ok bool) {
	d.ok = false
	if err := d.rc.Control(d.fn); err != nil || !d.ok {
		return 0, false
	}
	return d.v[skMeminfoDrops], true
}
