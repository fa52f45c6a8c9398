package core

import (
	"testing"
	"time"
)

// TestUntilAligned: the wait ends on a whole multiple of the period, never
// now (a timer armed with it always waits), at most a whole period.
func TestUntilAligned(t *testing.T) {
	defer func(p time.Duration) { tickPhase = p }(tickPhase)
	tickPhase = 0
	base := time.Unix(1_700_000_000, 0)
	for _, c := range []struct {
		at     time.Duration // after base, a whole second
		period time.Duration
		want   time.Duration
	}{
		{0, time.Second, time.Second},
		{300 * time.Millisecond, time.Second, 700 * time.Millisecond},
		{999 * time.Millisecond, time.Second, time.Millisecond},
		{1200 * time.Millisecond, 500 * time.Millisecond, 300 * time.Millisecond},
	} {
		now := base.Add(c.at)
		got := UntilAligned(now, c.period)
		if got != c.want {
			t.Errorf("UntilAligned(base+%v, %v) = %v, want %v", c.at, c.period, got, c.want)
		}
		if end := now.Add(got); !end.Truncate(c.period).Equal(end) {
			t.Errorf("base+%v: wait ends at %v, not on a multiple of %v", c.at, end, c.period)
		}
	}
}

// TestUntilAlignedPhase: with a phase, ticks fall on the phase past each
// multiple of the period, still at most a period away.
func TestUntilAlignedPhase(t *testing.T) {
	defer func(p time.Duration) { tickPhase = p }(tickPhase)
	tickPhase = 1_250 * time.Millisecond // 250 ms into each second, 250 ms into each half second
	base := time.Unix(1_700_000_000, 0)
	for _, c := range []struct {
		at, period, want time.Duration
	}{
		{0, time.Second, 250 * time.Millisecond},
		{250 * time.Millisecond, time.Second, time.Second},
		{300 * time.Millisecond, time.Second, 950 * time.Millisecond},
		{300 * time.Millisecond, 500 * time.Millisecond, 450 * time.Millisecond},
	} {
		if got := UntilAligned(base.Add(c.at), c.period); got != c.want {
			t.Errorf("UntilAligned(base+%v, %v) = %v, want %v", c.at, c.period, got, c.want)
		}
	}
}
