package httpflvsink

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// sockProbe reads one viewer socket's send queue. Its RawConn.Control
// callback is made once per viewer: a closure made per call would allocate.
type sockProbe struct {
	rc  syscall.RawConn
	n   int
	err error
	fn  func(fd uintptr)
}

// outq is the bytes the socket holds, sent but unacknowledged or not yet
// sent (SIOCOUTQ); false when it cannot be read.
func (p *sockProbe) outq() (int, bool) {
	if p.rc == nil {
		return 0, false
	}
	if p.fn == nil {
		p.fn = func(fd uintptr) { p.n, p.err = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }
	}
	if err := p.rc.Control(p.fn); err != nil || p.err != nil {
		return 0, false
	}
	return p.n, true
}
