package polltimer

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"

	"github.com/mediapipe/mediapipe/internal/rawio"
	"golang.org/x/sys/unix"
)

type impl struct {
	f    *os.File
	rc   syscall.RawConn
	r    *rawio.Reader
	done chan struct{}
	spec unix.ItimerSpec
	buf  [8]byte
	set  func(fd uintptr) // bound once: no closure per Reset
}

func (t *Timer) init(c chan struct{}) error {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("polltimer: timerfd_create: %w", err)
	}
	// os.NewFile puts a non-blocking descriptor in the poller.
	t.f = os.NewFile(uintptr(fd), "timerfd")
	// A descriptor the poller could not take has no deadlines: its Read
	// would fail at once and the timer never fire.
	if err := t.f.SetReadDeadline(time.Time{}); err != nil {
		t.f.Close()
		return fmt.Errorf("polltimer: timerfd not pollable: %w", err)
	}
	if t.rc, err = t.f.SyscallConn(); err != nil {
		t.f.Close()
		return fmt.Errorf("polltimer: %w", err)
	}
	t.done = make(chan struct{})
	t.r, t.set = rawio.NewReader(t.rc), t.setFD
	go t.wait(c)
	return nil
}

// wait hands each expiry to c until the descriptor closes.
func (t *Timer) wait(c chan struct{}) {
	defer close(t.done)
	for {
		// Reading consumes the expiry count (raw: internal/rawio).
		if _, err := t.r.Read(t.buf[:]); err != nil {
			var se *os.SyscallError
			if !errors.As(err, &se) {
				return // closed
			}
			// A failed read still means the descriptor woke: look at the clock.
		}
		select {
		case c <- struct{}{}:
		default: // one pending fire is enough
		}
	}
}

func (t *Timer) reset(d time.Duration) {
	t.spec.Value = unix.NsecToTimespec(int64(d))
	// It fails only for a closed descriptor: the timer is gone then.
	_ = t.rc.Control(t.set)
}

// setFD arms the timerfd: raw, a short call that never blocks, made
// without the runtime's syscall entry (which would wake sysmon, the very
// thing avoided).
func (t *Timer) setFD(fd uintptr) {
	unix.RawSyscall6(unix.SYS_TIMERFD_SETTIME, fd, 0, uintptr(unsafe.Pointer(&t.spec)), 0, 0, 0)
}

func (t *Timer) close() error {
	err := t.f.Close()
	<-t.done
	if errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}
