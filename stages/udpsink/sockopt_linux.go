package udpsink

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
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

// gso sends a run of equal-size datagrams (the last may be shorter) as one
// UDP_SEGMENT sendmsg: the kernel walks its UDP/IP path once for the run,
// which costs a third of what sendmmsg costs per datagram on loopback.
type gso struct {
	rc  syscall.RawConn
	oob []byte

	// the call in flight; fn is bound once so send does not allocate.
	buf   []byte
	errno error
	fn    func(fd uintptr) bool
}

// newGSO returns nil where the kernel lacks UDP_SEGMENT (before 4.18).
func newGSO(c *net.UDPConn) *gso {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	var gerr error
	if err := rc.Control(func(fd uintptr) { _, gerr = unix.GetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT) }); err != nil || gerr != nil {
		return nil
	}
	g := &gso{rc: rc, oob: make([]byte, unix.CmsgSpace(2))}
	h := (*unix.Cmsghdr)(unsafe.Pointer(&g.oob[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	g.fn = g.write
	return g
}

func (g *gso) write(fd uintptr) bool {
	_, err := unix.SendmsgN(int(fd), g.buf, g.oob, nil, unix.MSG_DONTWAIT)
	if err == unix.EAGAIN {
		return false // wait for the poller
	}
	g.errno = err
	return true
}

// send sends buf as datagrams of seg bytes each (the last may be shorter).
func (g *gso) send(buf []byte, seg int) error {
	binary.NativeEndian.PutUint16(g.oob[unix.CmsgLen(0):], uint16(seg))
	g.buf, g.errno = buf, nil
	err := g.rc.Write(g.fn)
	g.buf = nil
	if err != nil {
		return err
	}
	if g.errno != nil {
		return os.NewSyscallError("sendmsg", g.errno)
	}
	return nil
}

// gsoUnsupported: errors that mean this socket cannot do GSO at all (no
// checksum offload on the device, or a kernel that refuses the option).
func gsoUnsupported(err error) bool {
	return errors.Is(err, unix.EIO) || errors.Is(err, unix.ENOPROTOOPT) || errors.Is(err, unix.EOPNOTSUPP)
}

// gsoTooBig: EINVAL is what a segment larger than the path MTU gets.
func gsoTooBig(err error) bool { return errors.Is(err, unix.EINVAL) }
