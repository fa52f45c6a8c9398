// Package polltimer is a one-shot timer that the runtime's network poller
// fires, for a goroutine that waits on sockets and a deadline together.
//
// A time.Timer has two costs on a live relay's hot path that this one has
// not. The runtime's poller sleeps in whole milliseconds, rounded down, so
// a timer due in 6.4 ms wakes the process at 6 ms, finds nothing due and
// sleeps again: two wake-ups per timer. And while every P is idle, the
// runtime's monitor thread (sysmon) sleeps until the next timer and then
// polls every 20 µs for as long as the work it woke for runs: a timer that
// fires 25 times a second wakes that thread 25 times and keeps it
// spinning. On Linux this Timer is a timerfd in the poller's epoll set
// instead: one wake-up, on time, and sysmon never sees it. Elsewhere it is
// a time.Timer.
package polltimer

import "time"

// Timer fires at most once per Reset: C then yields a value. Its methods
// are for one goroutine (Close may come from another once it is done). A fire that
// raced with a Reset may still be received after it; callers treat a fire
// as "look at the clock", never as "the new deadline passed".
type Timer struct {
	// C receives when the timer fires.
	C  <-chan struct{}
	fb *fallback // not nil: a time.Timer does the work
	impl
}

// New returns a stopped Timer. Close it when done: on Linux it holds a
// descriptor and a goroutine. Where the timerfd cannot be had (out of
// descriptors) it is a time.Timer, and says why in err; it works either
// way.
func New() (t *Timer, err error) {
	c := make(chan struct{}, 1)
	t = &Timer{C: c}
	if err = t.init(c); err != nil {
		t.initFallback(c)
	}
	return t, err
}

// fallback is a time.Timer that fires into c.
type fallback struct {
	t      *time.Timer
	closed bool
}

func (t *Timer) initFallback(c chan struct{}) {
	t.fb = &fallback{t: time.AfterFunc(time.Hour, func() {
		select {
		case c <- struct{}{}:
		default:
		}
	})}
	t.fb.t.Stop()
}

// Reset arms the timer to fire d from now (at once for d <= 0), replacing
// any earlier deadline.
func (t *Timer) Reset(d time.Duration) {
	d = max(d, time.Nanosecond)
	if t.fb != nil {
		if !t.fb.closed {
			t.fb.t.Reset(d)
		}
		return
	}
	t.reset(d)
}

// Stop disarms the timer.
func (t *Timer) Stop() {
	if t.fb != nil {
		t.fb.t.Stop()
		return
	}
	t.reset(0)
}

// Close stops the timer and lets go of what it holds; C never fires again.
func (t *Timer) Close() error {
	if t.fb != nil {
		t.fb.closed = true
		t.fb.t.Stop()
		return nil
	}
	return t.close()
}
