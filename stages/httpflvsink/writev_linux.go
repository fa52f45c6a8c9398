package httpflvsink

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxIov is the most iovecs handed to one writev (Linux's IOV_MAX is 1024).
const maxIov = 1024

// haveWritev: the flusher writes viewers itself (else their goroutines do).
const haveWritev = true

// iovecs is a flusher's reusable writev argument.
type iovecs []unix.Iovec

// tryWritev makes one non-blocking writev of bufs on the socket behind rc
// (the caller keeps bufs to at most maxIov). It returns the bytes written; a
// full socket buffer is n < total with a nil error.
func tryWritev(rc syscall.RawConn, iov *iovecs, bufs [][]byte) (n int, err error) {
	v := (*iov)[:0]
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		e := unix.Iovec{Base: &b[0]}
		e.SetLen(len(b))
		v = append(v, e)
	}
	*iov = v
	if len(v) == 0 {
		return 0, nil
	}
	var errno syscall.Errno
	rerr := rc.Write(func(fd uintptr) bool {
		r, _, e := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&v[0])), uintptr(len(v)))
		n, errno = int(r), e
		return true // one attempt: a full socket is the viewer goroutine's job
	})
	clear(v) // keep no pointers into tag buffers
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
