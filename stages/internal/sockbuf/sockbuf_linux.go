package sockbuf

import (
	"net"

	"golang.org/x/sys/unix"
)

// SetSend asks for an n-byte send buffer on fd, from a net.Dialer's Control.
func SetSend(fd uintptr, n int) error { return set(fd, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, n) }

// SetRecv asks for an n-byte receive buffer on fd, from a net.ListenConfig's Control.
func SetRecv(fd uintptr, n int) error { return set(fd, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, n) }

// set tries the FORCE option first, which lets root pass [wr]mem_max, and
// falls back to the plain one, which the kernel caps.
func set(fd uintptr, force, plain, n int) error {
	if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, force, n) == nil {
		return nil
	}
	return unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, plain, n)
}

// Send reads back c's send buffer size; false when it cannot be read.
func Send(c *net.UDPConn) (int, bool) { return get(c, unix.SO_SNDBUF) }

// Recv reads back c's receive buffer size; false when it cannot be read.
func Recv(c *net.UDPConn) (int, bool) { return get(c, unix.SO_RCVBUF) }

// get halves what the kernel reports: Linux doubles the size granted.
func get(c *net.UDPConn, opt int) (int, bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	var n int
	var gerr error
	if err := rc.Control(func(fd uintptr) { n, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, opt) }); err != nil || gerr != nil {
		return 0, false
	}
	return n / 2, true
}
