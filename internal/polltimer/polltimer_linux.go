package polltimer

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

type impl struct {
	fd   int
	f    *os.File
	rc   syscall.RawConn
	done chan struct{}
	spec unix.ItimerSpec
	buf  [8]byte
	read func(fd uintptr) bool // bound once: no closure per wait or Reset
	set  func(fd uintptr)
}

func (t *Timer) init(c chan struct{}) error {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("polltimer: timerfd_create: %w", err)
	}
	// os.NewFile puts a non-blocking descriptor in the poller.
	t.f = os.NewFile(uintptr(fd), "timerfd")
	t.fd = fd
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
	t.read, t.set = t.readFD, t.setFD
	go t.wait(c)
	return nil
}

// readFD consumes the expiry count; false (EAGAIN) waits for the poller.
func (t *Timer) readFD(fd uintptr) bool {
	for {
		_, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&t.buf[0])), uintptr(len(t.buf)))
		if e != unix.EINTR {
			return e != unix.EAGAIN
		}
	}
}

// wait hands each expiry to c until the descriptor closes.
func (t *Timer) wait(c chan struct{}) {
	defer close(t.done)
	for {
		if err := t.rc.Read(t.read); err != nil {
			return // closed
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
