package rawio

import (
	"io"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Reader reads the descriptor behind rc; one goroutine at a time.
type Reader struct {
	rc    syscall.RawConn
	buf   []byte
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool // bound once: Read does not allocate
}

// NewReader reads through rc.
func NewReader(rc syscall.RawConn) *Reader {
	r := &Reader{rc: rc}
	r.fn = r.readFD
	return r
}

func (r *Reader) readFD(fd uintptr) bool {
	var n uintptr
	var e syscall.Errno
	for {
		n, _, e = unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&r.buf[0])), uintptr(len(r.buf)))
		if e != unix.EINTR {
			break
		}
	}
	if e == unix.EAGAIN || e == unix.EWOULDBLOCK {
		return false // nothing yet: wait for the poller (and the read deadline)
	}
	r.n, r.errno = int(n), e
	return true
}

// Read reads into p: io.EOF when the peer closed, the poller's own errors
// (the deadline's, net.ErrClosed) as RawConn.Read gives them, and a failed
// read as an *os.SyscallError.
func (r *Reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.buf, r.n, r.errno = p, 0, 0
	err := r.rc.Read(r.fn)
	r.buf = nil
	switch {
	case err != nil:
		return 0, err
	case r.errno != 0:
		return 0, os.NewSyscallError("read", r.errno)
	case r.n == 0:
		return 0, io.EOF
	}
	return r.n, nil
}
