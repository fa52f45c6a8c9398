package rtmpsource_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
	"github.com/mediapipe/mediapipe/stages/rtmpsource"
)

// A publisher killed and back within reconnect_grace continues its stream:
// one start, no end until the grace after the second publisher left,
// timestamps never going back, the second publisher's video from a keyframe
// with its sequence headers in-band; a third publisher too late starts anew.
func TestReconnectGraceContinues(t *testing.T) {
	clip := testmedia.Clip(t, testmedia.Options{Seconds: 2})
	s := startSource(t, rtmpsource.Config{ReconnectGrace: 1500 * time.Millisecond})
	first := push(t, s.url+"/live/g", clip, true)
	if got := s.h.Out.WaitData(30, 5*time.Second); len(got) < 30 {
		t.Fatalf("only %d packets before the kill", len(got))
	}
	if err := syscall.Kill(first.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	before := len(s.h.Out.Data())
	again := push(t, s.url+"/live/g", clip, false)
	if err := again.Wait(); err != nil {
		t.Fatalf("returning publisher: %v\n%s", err, testmedia.Stderr(again))
	}
	data := waitEnd(t, s, "live/g", 5*time.Second)

	starts := 0
	for _, p := range s.h.Out.Packets() {
		if p.Event == core.EventStart {
			starts++
		}
	}
	if starts != 1 {
		t.Fatalf("%d stream starts, want 1 (the stream continued)", starts)
	}
	last := map[uint8]uint32{}
	for i, p := range data {
		if prev, ok := last[p.Type]; ok && int32(p.Timestamp-prev) < 0 {
			t.Fatalf("packet %d (type %d): timestamp %d after %d", i, p.Type, p.Timestamp, prev)
		}
		last[p.Type] = p.Timestamp
	}
	// The returning publisher's part: in-band sequence headers, then video
	// from a keyframe, all after the first publisher's last timestamp.
	var firstLast uint32
	for _, p := range data[:before] {
		firstLast = max(firstLast, p.Timestamp)
	}
	seqHeaders, sawVideo := 0, false
	for _, p := range data[before:] {
		if int32(p.Timestamp-firstLast) <= 0 && p.Type != flv.TypeScript {
			t.Fatalf("returning publisher's tag at %d, not after %d", p.Timestamp, firstLast)
		}
		if flv.InitKindOf(p.Type, p.Data) != flv.InitNone {
			seqHeaders++
			continue
		}
		if p.Type == flv.TypeVideo && !sawVideo {
			sawVideo = true
			if !flv.IsVideoKeyframe(p.Data) {
				t.Fatal("returning publisher's first video is not a keyframe")
			}
		}
	}
	if seqHeaders < 2 || !sawVideo {
		t.Fatalf("returning publisher: %d sequence headers/metadata in-band, video %v", seqHeaders, sawVideo)
	}
	m := s.env.Metrics
	if c, e := core.CounterValue(m.Counter("reconnects_continued")), core.CounterValue(m.Counter("reconnect_grace_expired")); c != 1 || e != 1 {
		t.Fatalf("reconnects_continued %v, reconnect_grace_expired %v; want 1, 1", c, e)
	}
}

// Without a returning publisher the stream ends after the grace, not
// before; a stream waiting counts against max_publishers.
func TestReconnectGraceExpires(t *testing.T) {
	clip := testmedia.Clip(t, testmedia.Options{Seconds: 2})
	s := startSource(t, rtmpsource.Config{ReconnectGrace: time.Second, MaxPublishers: 1})
	pub := push(t, s.url+"/live/e", clip, false)
	if err := pub.Wait(); err != nil {
		t.Fatalf("publisher: %v\n%s", err, testmedia.Stderr(pub))
	}
	gone := time.Now()
	other := push(t, s.url+"/live/other", clip, false)
	if err := other.Wait(); err == nil {
		t.Fatal("a second name was admitted while live/e waits out its grace with max_publishers = 1")
	}
	waitEnd(t, s, "live/e", 5*time.Second)
	if d := time.Since(gone); d < 900*time.Millisecond {
		t.Fatalf("stream ended %v after its publisher, within the grace", d)
	}
	testrun.Eventually(t, 2*time.Second, "grace expiry counted", func() bool {
		return core.CounterValue(s.env.Metrics.Counter("reconnect_grace_expired")) == 1
	})
}

// A shutdown while a stream waits for its publisher ends it at once, well
// within the grace, and Run returns with no grace timer left behind.
func TestShutdownDuringGrace(t *testing.T) {
	clip := testmedia.Clip(t, testmedia.Options{Seconds: 1})
	s := startSource(t, rtmpsource.Config{ReconnectGrace: time.Minute})
	pub := push(t, s.url+"/live/sd", clip, false)
	if err := pub.Wait(); err != nil {
		t.Fatalf("publisher: %v\n%s", err, testmedia.Stderr(pub))
	}
	if _, _, ended := streamPackets(s.h.Out.Packets(), "live/sd"); ended {
		t.Fatal("the stream ended with its publisher, not after the grace")
	}
	stopped := time.Now()
	if err := s.h.Close(); err != nil {
		t.Fatal(err)
	}
	if _, started, ended := streamPackets(s.h.Out.Packets(), "live/sd"); !started || !ended {
		t.Fatalf("after shutdown: started %v, ended %v", started, ended)
	}
	if d := time.Since(stopped); d > 2*time.Second {
		t.Fatalf("shutdown took %v with a stream in its grace", d)
	}
}
