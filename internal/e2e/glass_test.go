package e2e

import (
	"context"
	"crypto/tls"
	"image"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/testcert"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
	"github.com/mediapipe/mediapipe/stages/httpflvsink"
	"github.com/mediapipe/mediapipe/stages/rtmpsource"
)

// startRelay runs rtmp-source → flv-tagger → httpflv-sink in this process,
// each stage with its spec's defaults plus sinkParams, until the test ends.
// It returns the RTMP publish address, the sink's address and its Env (for
// its metrics).
func startRelay(t *testing.T, sinkParams map[string]any) (rtmpAddr, httpAddr string, sinkEnv *core.Env) {
	t.Helper()
	src := stagetest.Build(t, "rtmp-source", map[string]any{"listen": "127.0.0.1:0"}, nil)
	tagger := stagetest.Build(t, "flv-tagger", map[string]any{}, nil)
	raw := map[string]any{"listen": "127.0.0.1:0"}
	for k, v := range sinkParams {
		raw[k] = v
	}
	sinkEnv = core.TestEnv("httpflv-sink")
	sink := stagetest.Build(t, "httpflv-sink", raw, sinkEnv)
	ctx, cancel := context.WithCancel(context.Background())
	for _, st := range []core.Stage{src, sink} {
		if err := st.(core.Opener).Open(ctx); err != nil {
			cancel()
			t.Fatal(err)
		}
	}
	av, tags := make(chan *core.Packet, 256), make(chan *core.Packet, 256)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); _ = src.Run(ctx, nil, chanOut(av)); close(av) }()
	go func() { defer wg.Done(); _ = tagger.Run(ctx, av, chanOut(tags)); close(tags) }()
	go func() { defer wg.Done(); _ = sink.Run(ctx, tags, stagetest.Discard{}) }()
	t.Cleanup(func() {
		cancel()
		stopped := make(chan struct{})
		go func() { wg.Wait(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(testrun.WaitLimit):
			t.Errorf("the pipeline did not stop within %v of its context ending", testrun.WaitLimit)
		}
	})
	return src.(*rtmpsource.Stage).Addr().String(), sink.(*httpflvsink.Stage).Addr().String(), sinkEnv
}

// TestGlassToGlass pushes a clock stream (each frame stamped with the wall
// clock when it was made) through rtmp-source → flv-tagger → httpflv-sink
// and plays it with ffmpeg as a low-latency player (-fflags nobuffer),
// reading each decoded frame's stamp: every frame read carries a valid
// stamp, the stamps increase, and once the GOP cache's backlog is drained
// the picture is less than a second old. It logs the latency: encoder,
// relay and decoder on loopback, a lower bound for any browser player.
// Over HTTPS as well: TLS viewers are written by their own goroutines.
func TestGlassToGlass(t *testing.T) {
	relayTest(t)
	t.Run("http", func(t *testing.T) { glassToGlass(t, nil) })
	t.Run("https", func(t *testing.T) {
		pair := testcert.NewCA(t).Issue(t, t.TempDir(), "edge")
		glassToGlass(t, &pair)
	})
}

func glassToGlass(t *testing.T, pair *testcert.Pair) {
	var params map[string]any
	scheme, player := "http", []string{"-fflags", "nobuffer", "-flags", "low_delay", "-rw_timeout", "20000000"}
	if pair != nil {
		params = map[string]any{"cert": pair.CertFile, "key": pair.KeyFile}
		scheme, player = "https", append(player, "-tls_verify", "1", "-ca_file", pair.CAFile)
	}
	rtmpAddr, httpAddr, _ := startRelay(t, params)
	ctx := ctxFor(t, 2*testrun.FFmpegLimit)
	pushCtx, stopPush := context.WithCancel(ctx)
	defer stopPush()
	push := testmedia.PushClock(t, pushCtx, "rtmp://"+rtmpAddr+"/live/clock", testmedia.ClockOptions{})
	url := scheme + "://" + httpAddr + "/live/clock.flv"
	playable := func() bool {
		c := &http.Client{Timeout: 5 * time.Second}
		if pair != nil {
			c.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pair.Pool}}
		}
		resp, err := c.Head(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	testrun.Eventually(t, 10*time.Second, "the clock stream served", playable)

	const frames = 150 // 5 s at 30 fps
	var lat []time.Duration
	var last time.Time
	err := testmedia.ClockFrames(ctx, url, 640, 360, frames, func(img *image.Gray, got time.Time) bool {
		stamp, ok := testmedia.ReadClock(img)
		if !ok {
			t.Errorf("frame %d: no clock", len(lat))
			return false
		}
		if !stamp.After(last) {
			t.Errorf("frame %d: stamp %v not after the previous %v", len(lat), stamp, last)
			return false
		}
		last = stamp
		lat = append(lat, got.Sub(stamp))
		return true
	}, player...)
	if err != nil {
		t.Fatal(err)
	}
	stopPush()
	if len(lat) != frames {
		t.Fatalf("read %d frames, want %d", len(lat), frames)
	}
	// The first second is the GOP cache's backlog, decoded as fast as it
	// arrives: from then on the player is live.
	live := slices.Clone(lat[30:])
	slices.Sort(live)
	med, p95 := live[len(live)/2], live[len(live)*95/100]
	t.Logf("glass to glass through the relay over %s, ffmpeg as the player: median %v, p95 %v, max %v (the first frame read was %v old)",
		scheme, med.Round(time.Millisecond), p95.Round(time.Millisecond), live[len(live)-1].Round(time.Millisecond), lat[0].Round(time.Millisecond))
	if med <= 0 || med > time.Second {
		t.Errorf("median glass-to-glass latency %v, want (0, 1 s] on loopback", med)
	}
	pushed := make(chan error, 1)
	go func() { pushed <- push.Wait() }()
	if err := testrun.Within(t, pushed, testrun.FFmpegLimit, "the clock push to end"); err != nil {
		t.Errorf("clock push: %v\n%s", err, testmedia.Stderr(push))
	}
}
