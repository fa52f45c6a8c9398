package udpsource

import (
	"syscall"

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
