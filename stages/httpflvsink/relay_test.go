package httpflvsink_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/stages/flvtagger"
	"github.com/mediapipe/mediapipe/stages/httpflvsink"
	"github.com/mediapipe/mediapipe/stages/rtmpsource"
)

type chanOut chan *core.Packet

func (c chanOut) Emit(p *core.Packet) { c <- p }

type discardOut struct{}

func (discardOut) Emit(p *core.Packet) { p.Release() }

// TestRelayFFmpegToFFmpeg: ffmpeg pushes RTMP → rtmp-source → flv-tagger →
// httpflv-sink; one ffmpeg viewer joins at once, one 2 s later. Each gets
// exactly the clip's last N packets, N covering at least its join.
func TestRelayFFmpegToFFmpeg(t *testing.T) {
	clip := testmedia.Clip(t, testmedia.Options{})
	want := testmedia.FrameMD5(t, clip, "-copyts")

	src, _ := rtmpsource.New(&rtmpsource.Config{Listen: "127.0.0.1:0", IdleTimeout: 10 * time.Second, MaxMessageSize: 8 << 20}, core.TestEnv("rtmp-source"))
	tagger, _ := flvtagger.New(nil, core.TestEnv("flv-tagger"))
	sinkEnv := core.TestEnv("httpflv-sink")
	sink, _ := httpflvsink.New(&httpflvsink.Config{Listen: "127.0.0.1:0", ViewerQueue: 1024, GOPCache: true, GOPMaxBytes: 32 << 20, WriteTimeout: 10 * time.Second}, sinkEnv)
	ctx, cancel := context.WithCancel(context.Background())
	for _, st := range []core.Stage{src, sink} {
		if err := st.(core.Opener).Open(ctx); err != nil {
			t.Fatal(err)
		}
	}
	av, tags := make(chan *core.Packet, 256), make(chan *core.Packet, 256)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); _ = src.Run(ctx, nil, chanOut(av)); close(av) }()
	go func() { defer wg.Done(); _ = tagger.Run(ctx, av, chanOut(tags)); close(tags) }()
	go func() { defer wg.Done(); _ = sink.Run(ctx, tags, discardOut{}) }()
	t.Cleanup(func() { cancel(); wg.Wait() }) // source ends, then tagger, then sink

	rtmpURL := "rtmp://" + src.(*rtmpsource.Stage).Addr().String() + "/live/relay"
	httpURL := "http://" + sink.(*httpflvsink.Stage).Addr().String() + "/live/relay.flv"
	pub := testmedia.Push(t, ctx, clip, rtmpURL, true)
	waitFor(t, "stream on the sink", func() bool { r, err := http.Head(httpURL); return err == nil && r.StatusCode == 200 })

	type result struct {
		frames []testmedia.Frame
		stderr string
		err    error
	}
	results := make([]chan result, 2)
	for i := range results {
		results[i] = make(chan result, 1)
		if i == 1 {
			time.Sleep(2 * time.Second) // the second viewer joins mid-stream
		}
		go func(ch chan result) {
			f, e, err := testmedia.FrameMD5Err(ctx, httpURL, "-copyts")
			ch <- result{f, e, err}
		}(results[i])
	}
	if err := pub.Wait(); err != nil {
		t.Fatalf("publisher: %v\n%s", err, testmedia.Stderr(pub))
	}
	for i, ch := range results {
		res := <-ch
		if res.err != nil {
			t.Fatalf("viewer %d: %v\n%s", i, res.err, res.stderr)
		}
		got := res.frames
		if len(got) == 0 || len(got) > len(want) {
			t.Fatalf("viewer %d got %d packets of %d", i, len(got), len(want))
		}
		tail := want[len(want)-len(got):]
		for j := range got {
			if got[j] != tail[j] {
				t.Fatalf("viewer %d packet %d: %v, want %v", i, j, got[j], tail[j])
			}
		}
		// The GOP cache starts at the first keyframe: audio muxed before it
		// is not replayed to a viewer that joins later.
		firstVideo := 0
		for firstVideo < len(want) && want[firstVideo].Stream != 0 {
			firstVideo++
		}
		if i == 0 && len(got) < len(want)-firstVideo {
			t.Errorf("first viewer joined in the first GOP but got only %d of %d packets", len(got), len(want))
		}
		if i == 1 && (len(got) < len(want)/5 || len(got) == len(want)) {
			t.Errorf("late viewer got %d of %d packets", len(got), len(want))
		}
		t.Logf("viewer %d: the clip's last %d of %d packets, identical", i, len(got), len(want))
	}
}
