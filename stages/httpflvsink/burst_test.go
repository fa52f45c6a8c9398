package httpflvsink_test

import (
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
	"github.com/mediapipe/mediapipe/stages/httpflvsink"
)

// TestBurstOutAtOnce: a tag arriving after a quiet spell goes out at once,
// not at the next flush_interval tick; one arriving right after a write
// waits for the rest of flush_interval (a viewer gets at most one write per
// interval) and then goes out without another tag to push it.
func TestBurstOutAtOnce(t *testing.T) {
	const interval = 1500 * time.Millisecond
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{}))
	s := startSink(t, httpflvsink.Config{GOPCache: false, FlushInterval: interval})
	st := s.h.StartStream("live/burst")
	s.sync(t)
	v := testrun.Watch(s.base + "/live/burst.flv")
	testrun.Eventually(t, testrun.WaitLimit, "the viewer", func() bool { return s.viewers() == 1 })

	start := time.Now()
	s.send(st, tags[0])
	testrun.Eventually(t, interval/2, "the first tag, at once", func() bool { return v.Count() == 1 })
	s.send(st, tags[1])
	time.Sleep(interval / 3)
	if n := v.Count(); n != 1 {
		t.Fatalf("%d tags read %s after the first write: the second went out before flush_interval", n, time.Since(start))
	}
	testrun.Eventually(t, 2*interval, "the second tag, once flush_interval has passed", func() bool { return v.Count() == 2 })
	if d := time.Since(start); d < interval*2/3 {
		t.Errorf("second tag read %s after the first was sent: want about flush_interval (%s)", d, interval)
	}
}

// TestStreamsFlushApart: flush_interval spaces the writes of each stream,
// not of the stage: a stream's tag right after another stream's write goes
// out at once.
func TestStreamsFlushApart(t *testing.T) {
	const interval = 1500 * time.Millisecond
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{}))
	s := startSink(t, httpflvsink.Config{GOPCache: false, FlushInterval: interval})
	a, b := s.h.StartStream("live/a"), s.h.StartStream("live/b")
	s.sync(t)
	va, vb := testrun.Watch(s.base+"/live/a.flv"), testrun.Watch(s.base+"/live/b.flv")
	testrun.Eventually(t, testrun.WaitLimit, "the viewers", func() bool { return s.viewers() == 2 })

	s.send(a, tags[0])
	testrun.Eventually(t, interval/2, "stream a's tag, at once", func() bool { return va.Count() == 1 })
	s.send(b, tags[0])
	testrun.Eventually(t, interval/2, "stream b's tag, at once after a's write", func() bool { return vb.Count() == 1 })
}
