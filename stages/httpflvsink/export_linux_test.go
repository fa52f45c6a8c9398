package httpflvsink

import (
	"fmt"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/internal/uring"
)

// KernelQueued is, for every viewer connected to the stage now, the bytes its
// socket's send queue holds (SIOCOUTQ: sent but unacknowledged, and not yet
// sent): what a viewer pins in the kernel, measured from the server's side.
func KernelQueued(cs core.Stage) []int {
	s := cs.(*Stage)
	var conns []syscall.Conn
	s.mu.RLock()
	for st := range s.live {
		st.mu.Lock()
		for _, v := range st.viewers {
			if c, ok := v.conn.(syscall.Conn); ok {
				conns = append(conns, c)
			}
		}
		st.mu.Unlock()
	}
	s.mu.RUnlock()
	var out []int
	for _, c := range conns {
		rc, err := c.SyscallConn()
		if err != nil {
			continue
		}
		n, ierr := 0, error(nil)
		if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil || ierr != nil {
			continue // closed meanwhile
		}
		out = append(out, n)
	}
	return out
}

// NoDelay is, for every viewer connected to the stage now, whether its
// socket has TCP_NODELAY set.
func NoDelay(cs core.Stage) []bool {
	s := cs.(*Stage)
	var out []bool
	s.mu.RLock()
	defer s.mu.RUnlock()
	for st := range s.live {
		st.mu.Lock()
		for _, v := range st.viewers {
			if v.probe.rc == nil {
				continue
			}
			on, oerr := 0, error(nil)
			if err := v.probe.rc.Control(func(fd uintptr) { on, oerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY) }); err == nil && oerr == nil {
				out = append(out, on != 0)
			}
		}
		st.mu.Unlock()
	}
	return out
}

// BatchesSent is how many batches flushers have sent with io_uring so far.
func BatchesSent() int64 { return batchesSent.Load() }

// WithoutRing makes stages started until the test ends write each viewer
// with its own writev, as where io_uring is unavailable.
func WithoutRing(t testing.TB) {
	newRing = refuseRing
	t.Cleanup(func() { newRing = uring.New })
}

func refuseRing(int) (*uring.Ring, error) {
	return nil, fmt.Errorf("uring: io_uring_setup: %w: refused by the test", uring.ErrUnavailable)
}
