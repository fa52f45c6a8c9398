package core

import "time"

// Clock is time as a stage sees it; tests inject a fake one (see stagetest).
type Clock interface {
	Now() time.Time
	NewTimer(d time.Duration) Timer
}

// Timer is the part of *time.Timer that stages use.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
	Reset(d time.Duration) bool
}

// RealClock is the wall clock.
type RealClock struct{}

func (RealClock) Now() time.Time { return time.Now() }

func (RealClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time        { return r.t.C }
func (r realTimer) Stop() bool                 { return r.t.Stop() }
func (r realTimer) Reset(d time.Duration) bool { return r.t.Reset(d) }

// UntilAligned is how long from now until the next whole multiple of
// period on the clock, in (0, period]. Periodic work that waits for it
// (a report a second in one stage, housekeeping in another) comes due at
// the same instants everywhere, so the process wakes once for all of it
// rather than once each: on an otherwise idle relay every timer firing is
// a wake-up of the thread and of the runtime's sysmon.
func UntilAligned(now time.Time, period time.Duration) time.Duration {
	return now.Truncate(period).Add(period).Sub(now)
}
