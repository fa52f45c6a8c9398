package udpsink

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// sockOpts are set between socket() and connect(): Linux picks a connected
// socket's route at connect time, so the multicast interface must be known by then.
type sockOpts struct {
	sndbuf    int
	multicast bool
	ttl       int
	loop      bool
	ifi       *net.Interface
}

func (o sockOpts) control(network, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		set := func(level, opt, v int) {
			if serr == nil {
				serr = unix.SetsockoptInt(int(fd), level, opt, v)
			}
		}
		if o.sndbuf > 0 {
			// SO_SNDBUFFORCE lets root pass wmem_max; fall back silently.
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, o.sndbuf) != nil {
				set(unix.SOL_SOCKET, unix.SO_SNDBUF, o.sndbuf)
			}
		}
		if !o.multicast {
			return
		}
		loop := 0
		if o.loop {
			loop = 1
		}
		if network == "udp6" {
			set(unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, o.ttl)
			set(unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_LOOP, loop)
			if o.ifi != nil {
				set(unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, o.ifi.Index)
			}
			return
		}
		set(unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, o.ttl)
		set(unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, loop)
		if o.ifi != nil && serr == nil {
			serr = unix.SetsockoptIPMreqn(int(fd), unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: int32(o.ifi.Index)})
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// sendBuffer reads back SO_SNDBUF (Linux reports twice what was granted).
func sendBuffer(c *net.UDPConn) (int, bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	var n int
	var gerr error
	if err := rc.Control(func(fd uintptr) { n, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF) }); err != nil || gerr != nil {
		return 0, false
	}
	return n / 2, true
}
