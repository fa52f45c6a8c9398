package rtmpsource

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawReader reads a TCP connection with read(2) made raw, not through the
// runtime's syscall entry: on a non-blocking socket the call never blocks,
// and the entry wakes the runtime's monitor thread (sysmon) whenever the
// process was idle — every burst of a live stream, at a cost here larger
// than the read's (docs/performance.md, "What limits the fan-out now").
type rawReader struct {
	rc            syscall.RawConn
	local, remote net.Addr // for errors, as net.Conn.Read names them
	buf           []byte
	n             int
	errno         syscall.Errno
	fn            func(fd uintptr) bool // bound once: read does not allocate
}

// newRawReader returns nil where c has no descriptor (a test's pipe) or
// under the race detector, which sees a buffer written by syscall.Read but
// not by a raw read(2).
func newRawReader(c net.Conn) *rawReader {
	if raceEnabled {
		return nil
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	r := &rawReader{rc: rc, local: c.LocalAddr(), remote: c.RemoteAddr()}
	r.fn = r.readFD
	return r
}

func (r *rawReader) readFD(fd uintptr) bool {
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

// read is net.Conn's Read: io.EOF when the peer closed, the deadline's
// error (a net.Error that times out) when it passed.
func (r *rawReader) read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.buf, r.n, r.errno = p, 0, 0
	err := r.rc.Read(r.fn)
	r.buf = nil
	if err != nil {
		// The poller's own errors (deadline, closed) as net.Conn.Read
		// gives them, but for the operation's name.
		var oe *net.OpError
		if errors.As(err, &oe) {
			oe.Op = "read"
		}
		return 0, err
	}
	if r.errno != 0 {
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: r.local, Addr: r.remote, Err: os.NewSyscallError("read", r.errno)}
	}
	if r.n == 0 {
		return 0, io.EOF
	}
	return r.n, nil
}
