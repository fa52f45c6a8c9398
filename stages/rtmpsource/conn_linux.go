package rtmpsource

import (
	"errors"
	"net"
	"os"
	"syscall"

	"github.com/mediapipe/mediapipe/internal/rawio"
)

// rawReader reads the publisher's TCP connection with a raw read(2)
// (internal/rawio: no sysmon wake-up per burst), its errors named as
// net.Conn.Read names them.
type rawReader struct {
	r             *rawio.Reader
	local, remote net.Addr
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
	return &rawReader{r: rawio.NewReader(rc), local: c.LocalAddr(), remote: c.RemoteAddr()}
}

// read is net.Conn's Read: io.EOF when the peer closed, the deadline's
// error (a net.Error that times out) when it passed.
func (r *rawReader) read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err == nil {
		return n, nil
	}
	var oe *net.OpError
	var se *os.SyscallError
	switch {
	case errors.As(err, &oe): // the poller's (deadline, closed): rawConn names them "raw-read"
		oe.Op = "read"
	case errors.As(err, &se):
		err = &net.OpError{Op: "read", Net: "tcp", Source: r.local, Addr: r.remote, Err: err}
	}
	return n, err
}
