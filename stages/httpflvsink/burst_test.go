package httpflvsink_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
	"github.com/mediapipe/mediapipe/stages/httpflvsink"
)

// TestBurstOutAtOnce: a stream with few viewers has each burst written at
// once, not at the next flush_interval tick nor flush_interval after its
// last write (spacing grows with the audience: spacing_linux_test.go).
func TestBurstOutAtOnce(t *testing.T) {
	const interval = 1500 * time.Millisecond
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{}))
	s := startSink(t, httpflvsink.Config{GOPCache: false, FlushInterval: interval})
	st := s.h.StartStream("live/burst")
	s.sync(t)
	v := testrun.Watch(s.base + "/live/burst.flv")
	testrun.Eventually(t, testrun.WaitLimit, "the viewer", func() bool { return s.viewers() == 1 })

	for i := range 3 {
		s.send(st, tags[i])
		testrun.Eventually(t, interval/3, fmt.Sprintf("tag %d, at once", i+1), func() bool { return v.Count() == i+1 })
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
