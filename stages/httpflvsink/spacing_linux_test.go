package httpflvsink

import (
	"testing"
	"time"
)

func TestSpacingGrowsWithAudience(t *testing.T) {
	const capWait = 20 * time.Millisecond
	for _, c := range []struct {
		viewers int
		want    time.Duration
	}{{0, 0}, {1, capWait / fullSpacingViewers}, {fullSpacingViewers / 2, capWait / 2}, {fullSpacingViewers, capWait}, {5000, capWait}} {
		if got := spacing(capWait, c.viewers); got != c.want {
			t.Errorf("spacing(%s, %d viewers) = %s, want %s", capWait, c.viewers, got, c.want)
		}
	}
}

// TestBigAudienceCoalesced: a stream with a big audience has a burst after
// a quiet spell written at once, the next one held until flush_interval
// after that write; while input is still coming (busy) a burst waits for
// its end, but no tag waits past flush_interval.
func TestBigAudienceCoalesced(t *testing.T) {
	const capWait = time.Second // long enough that scheduling does not matter
	tf := newTestFlusher(t)
	tf.s.cfg.FlushInterval = capWait
	loopViewers(t, tf.st, fullSpacingViewers)

	tf.push()
	t0 := time.Now()
	if next := tf.f.flushDue(t0, false); !next.IsZero() || len(tf.s.dirty) != 0 {
		t.Fatalf("the first burst after a quiet spell was held (until %v)", next)
	}
	tf.push()
	next := tf.f.flushDue(time.Now(), false)
	if len(tf.s.dirty) != 1 {
		t.Fatal("the burst right after a write went out at once")
	}
	if d := next.Sub(t0); d < capWait*9/10 || d > capWait*11/10 {
		t.Fatalf("held until %s after the last write, want flush_interval (%s)", d, capWait)
	}
	if tf.f.flushDue(next, false); len(tf.s.dirty) != 0 {
		t.Fatal("not written once flush_interval had passed")
	}

	// Busy: the next burst is still arriving, so a due stream waits...
	tf.push()
	if tf.f.flushDue(next.Add(2*capWait), true); len(tf.s.dirty) != 0 {
		t.Fatal("busy input held a tag past flush_interval")
	}
	tf.push()
	if at := tf.f.flushDue(tf.st.dirtySince.Add(capWait/2), true); len(tf.s.dirty) != 1 || !at.Equal(tf.st.dirtySince.Add(capWait)) {
		t.Fatalf("busy input: want the burst held until flush_interval after its first tag (%v), got dirty=%d next=%v", tf.st.dirtySince.Add(capWait), len(tf.s.dirty), at)
	}
}
