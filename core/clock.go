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

// UntilAligned is how long from now until the process's next tick of
// period, in (0, period]. Periodic work that waits for it (a report a
// second in one stage, housekeeping in another) comes due at the same
// instants in the process, so it wakes once for all of it rather than
// once each: on an otherwise idle relay every timer firing is a wake-up of
// the thread and of the runtime's sysmon. The ticks are whole multiples of
// period shifted by a phase of the process's own (from when it started),
// so a fleet of edges does not send its reports to the cloud in step.
// period must be positive.
func UntilAligned(now time.Time, period time.Duration) time.Duration {
	if period <= 0 {
		panic("core.UntilAligned: period must be positive")
	}
	phase := tickPhase % period
	return now.Add(-phase).Truncate(period).Add(period).Add(phase).Sub(now)
}

// tickPhase shifts UntilAligned's ticks: the nanoseconds of the process's
// start, different from one process to the next.
var tickPhase = time.Duration(time.Now().Nanosecond())
