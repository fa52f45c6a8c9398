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

// kernelDrops reads how many datagrams the kernel has dropped for rc's
// socket (a wrapping count); ok is false where the kernel cannot say.
func kernelDrops(rc syscall.RawConn) (n uint32, ok bool) {
	var v [skMeminfoDrops + 1]uint32
	_ = rc.Control(func(fd uintptr) {
		l := uint32(unsafe.Sizeof(v))
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&v[0])), uintptr(unsafe.Pointer(&l)), 0)
		ok = e == 0 && l >= uint32(unsafe.Sizeof(v))
	})
	return v[skMeminfoDrops], ok
}
