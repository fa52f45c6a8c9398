package httpflvsink

import (
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core/media/flv"
)

func TestSpacingGrowsWithAudience(t *testing.T) {
	const capWait = 20 * time.Millisecond
	for _, c := range []struct {
		viewers int
		want    time.Duration
	}{{0, 0}, {1, capWait / (2 * coalesceViewers)}, {coalesceViewers / 2, capWait / 4}, {coalesceViewers - 1, capWait * (coalesceViewers - 1) / (2 * coalesceViewers)}, {5000, capWait / 2}} {
		if got := spacing(capWait, c.viewers); got != c.want {
			t.Errorf("spacing(%s, %d viewers) = %s, want %s", capWait, c.viewers, got, c.want)
		}
	}
}

// TestMidAudienceSpaced: a stream with an audience just short of
// coalesceViewers has a burst after a quiet spell written at once, the next
// one held until its spacing (nearly flush_interval) after that write;
// while input is still coming (busy) a burst waits for its end, but no tag
// waits past flush_interval.
func TestMidAudienceSpaced(t *testing.T) {
	const capWait = time.Second // long enough that scheduling does not matter
	tf := newTestFlusher(t)
	tf.s.cfg.FlushInterval = capWait
	const n = coalesceViewers - 1
	loopViewers(t, tf.st, n)
	space := spacing(capWait, n)

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
	if d := next.Sub(t0); d < space*9/10 || d > space*11/10 {
		t.Fatalf("held until %s after the last write, want its spacing (%s)", d, space)
	}
	if tf.f.flushDue(next, false); len(tf.s.dirty) != 0 {
		t.Fatal("not written once its spacing had passed")
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

// burst queues one audio tag as if it came at at, the stream's audio
// having come gap apart (the test's own clock: data() reads the real one).
func (tf *testFlusher) burst(at time.Time, gap time.Duration) {
	wasDirty := tf.st.dirty
	tf.push()
	tf.st.lastAt[0], tf.st.pace[0] = at, gap
	if !wasDirty {
		tf.st.dirtySince = at
	}
}

// TestBigAudiencePaired: from coalesceViewers on, a burst is held for the
// stream's next one while that is expected (by the pace its tags come at)
// before flush_interval runs out for the oldest tag queued, so one write
// carries the bursts of up to flush_interval; a stream whose bursts come
// further apart than that is written at every burst, one whose next burst
// is overdue is written at once, and no tag waits past flush_interval.
func TestBigAudiencePaired(t *testing.T) {
	const capWait = time.Second
	tf := newTestFlusher(t)
	tf.s.cfg.FlushInterval = capWait
	vs := loopViewers(t, tf.st, coalesceViewers)
	written := func() int64 { vs[0].mu.Lock(); defer vs[0].mu.Unlock(); return vs[0].written }

	batches0 := batchesSent.Load()
	// Bursts 400 ms apart: the first two are held, the third (whose next
	// would come past the first's deadline) goes out with them.
	t0 := time.Now()
	for i, held := range []bool{true, true, false} {
		at := t0.Add(time.Duration(i) * 400 * time.Millisecond)
		tf.burst(at, 400*time.Millisecond)
		next := tf.f.flushDue(at, false)
		if got := len(tf.s.dirty) == 1; got != held {
			t.Fatalf("burst %d: held %v, want %v", i, got, held)
		}
		if held && written() != 0 {
			t.Fatalf("burst %d: written while held", i)
		}
		if held && !next.Equal(t0.Add(capWait)) {
			t.Fatalf("burst %d held until %v, want flush_interval after the first tag (%v)", i, next.Sub(t0), capWait)
		}
	}
	if w := written(); w < 3*int64(len(tf.tag)) {
		t.Fatalf("the write carried %d tag bytes, want the three bursts' %d", w, 3*len(tf.tag))
	}
	if tf.f.ring != nil && batchesSent.Load() != batches0+1 {
		t.Fatalf("%d batches sent for the three bursts, want 1", batchesSent.Load()-batches0)
	}

	// A burst whose next one is late: written at flush_interval, not later.
	t1 := t0.Add(2 * time.Second)
	tf.burst(t1, 400*time.Millisecond)
	if tf.f.flushDue(t1, false); len(tf.s.dirty) != 1 {
		t.Fatal("a burst expected to be followed in time was not held")
	}
	if tf.f.flushDue(t1.Add(capWait), false); len(tf.s.dirty) != 0 {
		t.Fatal("a held burst waited past flush_interval")
	}
	tf.burst(t1.Add(2*capWait), 400*time.Millisecond)
	if tf.f.flushDue(t1.Add(2*capWait+500*time.Millisecond), false); len(tf.s.dirty) != 0 {
		t.Fatal("a burst whose next one is overdue was still held")
	}

	// A lone burst is held for a next one due a little past the deadline
	// (pairSlack: a coarse publisher clock), and once held it stays held
	// until its deadline even when the next one is overdue meanwhile...
	t3 := t1.Add(5 * time.Second)
	tf.burst(t3, capWait+pairSlack/2)
	if tf.f.flushDue(t3, false); len(tf.s.dirty) != 1 {
		t.Fatal("a lone burst whose next one is due just past the deadline was not held")
	}
	if tf.f.flushDue(t3.Add(capWait-time.Millisecond), false); len(tf.s.dirty) != 1 {
		t.Fatal("a held burst went out before its deadline with nothing new")
	}
	if tf.f.flushDue(t3.Add(capWait), false); len(tf.s.dirty) != 0 {
		t.Fatal("a held burst waited past flush_interval")
	}
	// A held burst stays held when the next one it waits for is overdue
	// meanwhile (another stream's burst or a timer runs flushDue): the
	// wait was decided at its end and its deadline bounds it.
	t5 := t3.Add(2 * time.Second)
	tf.burst(t5, 400*time.Millisecond)
	if tf.f.flushDue(t5, false); len(tf.s.dirty) != 1 {
		t.Fatal("a burst expected to be followed in time was not held")
	}
	if tf.f.flushDue(t5.Add(500*time.Millisecond), false); len(tf.s.dirty) != 1 {
		t.Fatal("a held burst went out before its deadline when its next one was overdue")
	}
	if tf.f.flushDue(t5.Add(capWait), false); len(tf.s.dirty) != 0 {
		t.Fatal("a held burst waited past flush_interval")
	}
	// ...but not for one due well past it.
	t4 := t5.Add(5 * time.Second)
	tf.burst(t4, capWait+2*pairSlack)
	if tf.f.flushDue(t4, false); len(tf.s.dirty) != 0 {
		t.Fatal("a lone burst was held for a next one due well past the deadline")
	}

	// Bursts further apart than flush_interval: each goes out at once.
	t2 := t4.Add(5 * time.Second)
	tf.burst(t2, 2*capWait)
	if next := tf.f.flushDue(t2, false); len(tf.s.dirty) != 0 {
		t.Fatalf("a burst with no next one due in time was held until %v", next)
	}
}

// TestTagPace: the pace of a stream's audio and of its video are learnt
// apart, tags of one burst do not count, and the next burst is the
// earliest of the next audio and the next video frame, never one overdue.
func TestTagPace(t *testing.T) {
	st := &stream{}
	t0 := time.Now()
	ms := func(n float64) time.Time { return t0.Add(time.Duration(n * float64(time.Millisecond))) }
	st.tagPace(flv.TypeAudio, ms(0))
	st.tagPace(flv.TypeVideo, ms(0))
	st.tagPace(flv.TypeScript, ms(5)) // no pace of its own
	if next := st.nextBurst(ms(1)); !next.IsZero() {
		t.Fatalf("next burst %v with no pace known yet", next.Sub(t0))
	}
	st.tagPace(flv.TypeAudio, ms(23))
	st.tagPace(flv.TypeAudio, ms(23.5)) // the same burst: not a pace
	st.tagPace(flv.TypeVideo, ms(33))
	if st.pace[0] != 23*time.Millisecond || st.pace[1] != 33*time.Millisecond {
		t.Fatalf("pace audio %v video %v, want 23ms 33ms", st.pace[0], st.pace[1])
	}
	if next := st.nextBurst(ms(34)); !next.Equal(ms(46.5)) {
		t.Fatalf("next burst at %v, want the next audio frame's 46.5ms", next.Sub(t0))
	}
	if next := st.nextBurst(ms(50)); !next.Equal(ms(66)) {
		t.Fatalf("with the audio overdue, next burst at %v, want the video's 66ms", next.Sub(t0))
	}
	if next := st.nextBurst(ms(70)); !next.IsZero() {
		t.Fatalf("with everything overdue, next burst at %v, want none", next.Sub(t0))
	}
	st.tagPace(flv.TypeAudio, ms(56.5)) // a late frame: the pace moves a quarter of the way
	want := 23*time.Millisecond + (33*time.Millisecond-23*time.Millisecond)/4
	if st.pace[0] != want {
		t.Fatalf("pace after a late frame %v, want %v", st.pace[0], want)
	}
	st.tagPace(flv.TypeAudio, ms(5000)) // after a pause: not a pace
	if st.pace[0] != want {
		t.Fatalf("pace after a 5 s pause %v, want it kept at %v", st.pace[0], want)
	}
}
