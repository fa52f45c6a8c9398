package polltimer

import (
	"testing"
	"time"
)

func newTimer(t *testing.T) *Timer {
	t.Helper()
	tm, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tm.Close() })
	return tm
}

func TestFiresOnTime(t *testing.T) {
	tm := newTimer(t)
	for _, d := range []time.Duration{0, 3 * time.Millisecond, 20 * time.Millisecond} {
		start := time.Now()
		tm.Reset(d)
		select {
		case <-tm.C:
		case <-time.After(5 * time.Second):
			t.Fatalf("Reset(%v): never fired", d)
		}
		if got := time.Since(start); got < d {
			t.Fatalf("Reset(%v) fired after %v: early", d, got)
		}
	}
}

// newFallback is what New gives where no timerfd can be had.
func newFallback(t *testing.T) *Timer {
	c := make(chan struct{}, 1)
	tm := &Timer{C: c}
	tm.initFallback(c)
	t.Cleanup(func() { tm.Close() })
	return tm
}

// Both the timerfd and the fallback: a later Reset replaces an earlier
// one, sooner or later, and Stop disarms.
func TestResetReplacesAndStopDisarms(t *testing.T) {
	for _, c := range []struct {
		name string
		make func(*testing.T) *Timer
	}{{"timerfd", newTimer}, {"fallback", newFallback}} {
		t.Run(c.name, func(t *testing.T) {
			tm := c.make(t)
			tm.Reset(time.Hour)
			tm.Reset(5 * time.Millisecond) // the later call wins, earlier or not
			select {
			case <-tm.C:
			case <-time.After(5 * time.Second):
				t.Fatal("a Reset to sooner did not replace the hour")
			}
			tm.Reset(20 * time.Millisecond)
			tm.Stop()
			select {
			case <-tm.C:
				t.Fatal("fired after Stop")
			case <-time.After(100 * time.Millisecond):
			}
			tm.Reset(10 * time.Millisecond)
			tm.Reset(time.Hour) // pushed out: must not fire at 10 ms
			select {
			case <-tm.C:
				t.Fatal("fired at the replaced, earlier deadline")
			case <-time.After(100 * time.Millisecond):
			}
		})
	}
}

func TestCloseEndsIt(t *testing.T) {
	tm, err := New()
	if err != nil {
		t.Fatal(err)
	}
	tm.Reset(time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- tm.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return: its goroutine did not end")
	}
	tm.Reset(time.Millisecond) // after Close: harmless
	tm.Stop()
}

func TestResetAllocs(t *testing.T) {
	tm := newTimer(t)
	if a := testing.AllocsPerRun(100, func() { tm.Reset(time.Hour) }); a > 0 {
		t.Fatalf("Reset allocates %.1f times; it runs per burst", a)
	}
}
