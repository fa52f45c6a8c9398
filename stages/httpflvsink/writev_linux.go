package httpflvsink

import (
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxIov is the most iovecs handed to one writev (Linux's IOV_MAX is 1024).
const maxIov = 1024

// haveWritev: the flusher writes viewers itself (else their goroutines do).
const haveWritev = true

// iovecs is a flusher's reusable writev state. The callback handed to
// RawConn.Write is made once and keeps its inputs and results here: a
// closure made per call would capture them and allocate on every write.
type iovecs struct {
	v     []unix.Iovec
	n     int
	errno syscall.Errno
	write func(fd uintptr) bool
}

// writev is the RawConn.Write callback: one attempt, as a full socket is
// the viewer goroutine's job. The socket is non-blocking, so the call is
// short and made raw: no entersyscall/exitsyscall, which would wake the
// runtime's sysmon thread and let it hand the P to another thread mid-flush
// (a flush of many viewers is a train of such calls).
func (w *iovecs) writev(fd uintptr) bool {
	r, _, e := unix.RawSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&w.v[0])), uintptr(len(w.v)))
	w.n, w.errno = int(r), e
	return true
}

// tryWritev makes one non-blocking writev of bufs on the socket behind rc
// (the caller keeps bufs to at most maxIov). It returns the bytes written; a
// full socket buffer is n < total with a nil error.
func tryWritev(rc syscall.RawConn, w *iovecs, bufs [][]byte) (n int, err error) {
	if w.write == nil {
		w.write = w.writev
	}
	v := w.v[:0]
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		e := unix.Iovec{Base: &b[0]}
		e.SetLen(len(b))
		v = append(v, e)
	}
	w.v = v
	if len(v) == 0 {
		return 0, nil
	}
	w.n, w.errno = 0, 0
	rerr := rc.Write(w.write)
	clear(v) // keep no pointers into tag buffers
	n, errno := w.n, w.errno
	switch {
	case rerr != nil:
		return 0, rerr
	case errno == syscall.EAGAIN || errno == syscall.EINTR:
		return 0, nil
	case errno != 0:
		return 0, errno
	}
	return n, nil
}

// dupSocket returns a new descriptor of rc's socket, for sends outside
// rc's own reference to it (batch.go).
func dupSocket(rc syscall.RawConn) (int, error) {
	nfd, derr := -1, error(nil)
	err := rc.Control(func(fd uintptr) { nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) })
	if err == nil {
		err = derr
	}
	if err != nil {
		return -1, fmt.Errorf("httpflv-sink: duplicate a viewer's socket: %w", err)
	}
	return nfd, nil
}

// closeSock closes a descriptor from dupSocket; -1 is none.
func closeSock(fd int) {
	if fd >= 0 {
		_ = unix.Close(fd)
	}
}
