package udpsource

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// sockOpts are set before bind: the receive buffer, and SO_REUSEADDR for
// multicast so several receivers on one host can share the group's port.
type sockOpts struct {
	rcvbuf int
	reuse  bool
}

func (o sockOpts) control(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		if o.reuse {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		}
		if o.rcvbuf > 0 && serr == nil {
			// SO_RCVBUFFORCE lets root pass rmem_max; otherwise the kernel caps.
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, o.rcvbuf) != nil {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, o.rcvbuf)
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// recvBuffer reads back SO_RCVBUF (Linux reports twice what was granted).
func recvBuffer(c *net.UDPConn) (int, bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	var n int
	var gerr error
	if err := rc.Control(func(fd uintptr) { n, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF) }); err != nil || gerr != nil {
		return 0, false
	}
	return n / 2, true
}
