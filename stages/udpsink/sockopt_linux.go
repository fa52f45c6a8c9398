package udpsink

import (
	"encoding/binary"
	"errors"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/mediapipe/mediapipe/stages/internal/sockbuf"
)

// control sets o between socket() and connect(): Linux picks a connected
// socket's route at connect time, so the multicast interface must be known by then.
func (o sockOpts) control(network, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		set := func(level, opt, v int) {
			if serr == nil {
				serr = unix.SetsockoptInt(int(fd), level, opt, v)
			}
		}
		if o.sndbuf > 0 {
			serr = sockbuf.SetSend(fd, o.sndbuf)
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

// gsoSupported reports whether the kernel takes UDP_SEGMENT (4.18+). A
// message carrying that control message is one run of equal-size datagrams
// (the last may be shorter): the kernel walks its UDP/IP path once for the
// run, which costs a third of what a datagram-per-message sendmmsg costs
// per datagram on loopback.
func gsoSupported(c *net.UDPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var gerr error
	if err := rc.Control(func(fd uintptr) { _, gerr = unix.GetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT) }); err != nil || gerr != nil {
		return false
	}
	return true
}

// gsoCmsgSpace is the size of one UDP_SEGMENT control message.
var gsoCmsgSpace = unix.CmsgSpace(2)

// appendGSOCmsg appends the control message that cuts a message's payload
// into seg-byte datagrams.
func appendGSOCmsg(b []byte, seg int) []byte {
	off := len(b)
	b = append(b, make([]byte, gsoCmsgSpace)...) // no allocation within cap
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[off]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(b[off+unix.CmsgLen(0):], uint16(seg))
	return b
}

// gsoUnsupported: errors that mean this socket cannot do GSO at all (no
// checksum offload on the device, or a kernel that refuses the option).
func gsoUnsupported(err error) bool {
	return errors.Is(err, unix.EIO) || errors.Is(err, unix.ENOPROTOOPT) || errors.Is(err, unix.EOPNOTSUPP)
}

// gsoTooBig: EINVAL is what a segment larger than the path MTU gets.
func gsoTooBig(err error) bool { return errors.Is(err, unix.EINVAL) }
