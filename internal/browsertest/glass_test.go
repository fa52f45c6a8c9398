package browsertest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/internal/browser"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// TestFLVPageGlassToGlass plays a clock stream (each frame stamped with the
// wall clock when it was made) on the edge's page and reads the stamp of
// the frame the <video> shows, drawn into a canvas: how old the picture is
// that a viewer of the page sees, encoder, relay, player and decoder all
// in. Logged, with the first frame's time; bounded by the target.
func TestFLVPageGlassToGlass(t *testing.T) {
	httpAddr, rtmpAddr := relay(t, "")
	ctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	testmedia.PushClock(t, ctx, "rtmp://"+rtmpAddr+"/live/clock", testmedia.ClockOptions{})
	testrun.WaitPlayable(t, "http://"+httpAddr+"/live/clock.flv", 10*time.Second)
	glassToGlass(t, "HTTP-FLV", "http://"+httpAddr+"/live/clock", 0.5)
}

// TestHLSPageGlassToGlass is TestFLVPageGlassToGlass for the edge's LL-HLS
// page (hls-sink on a branch, hls.js).
func TestHLSPageGlassToGlass(t *testing.T) {
	hlsAddr, rtmpAddr := relayHLS(t)
	ctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	testmedia.PushClock(t, ctx, "rtmp://"+rtmpAddr+"/live/clock", testmedia.ClockOptions{})
	glassToGlass(t, "LL-HLS", "http://"+hlsAddr+"/live/clock", 2)
}

// glassToGlass opens the player page at url and reads the age of the
// picture it shows; the median must be at most bound seconds.
func glassToGlass(t *testing.T, what, url string, bound float64) {
	t.Helper()
	p := browser.Start(t)
	p.Navigate(url)
	p.WaitUntil(30*time.Second, "the player to play", `window.mediapipe.state === 'playing'`, state)
	// 'playing' may come just before the first frame is shown.
	p.WaitUntil(5*time.Second, "the first frame", `window.mediapipe.firstFrame !== null`, state)
	first := browser.MustEval[float64](p, `window.mediapipe.firstFrame`)
	t.Logf("page start: player made at %s ms, then %s", browser.MustEval[[]byte](p, `Math.round(window.mediapipe.startAt)`), browser.MustEval[[]byte](p, `JSON.stringify(window.mediapipe.marks)`))
	if _, err := browser.Eval[any](p, testmedia.ClockJS); err != nil {
		t.Fatalf("clock reader: %v", err)
	}
	// Let the player settle at the live edge (a second), then sample 5 s.
	// The target is the latency once playing: a player that starts behind
	// on a loaded machine catches up (hls.js at up to 1.2×), so a window
	// over the bound is followed by a second one, and that one decides.
	time.Sleep(time.Second)
	var med float64
	for window := 1; window <= 2; window++ {
		med = sampleAge(t, p, what, first)
		if med <= bound {
			break
		}
		if window == 2 {
			t.Errorf("the picture is a median %.3f s old, want ≤ %.1f s", med, bound)
		}
	}
	if med < 0 {
		t.Errorf("the picture is from the future (%.3f s): the clock is misread", med)
	}
}

// sampleAge reads the age of the picture the page shows every 250 ms for
// 5 s, logs what it saw and returns the median age.
func sampleAge(t *testing.T, p *browser.Page, what string, first float64) float64 {
	t.Helper()
	type reading struct {
		Age     *float64 `json:"age"`
		Latency *float64 `json:"latency"`
	}
	var ages, edges []float64
	misses := 0
	var lastErr error // of the last read that failed outright
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		r, err := browser.Eval[reading](p, `(() => { const ms = mediapipeReadClock(document.querySelector('video'));
			return {age: ms === null ? null : (Date.now() - ms) / 1000, latency: window.mediapipe.latency}; })()`)
		if err != nil || r.Age == nil {
			misses++
			if err != nil {
				lastErr = err
			}
			continue
		}
		ages = append(ages, *r.Age)
		if r.Latency != nil {
			edges = append(edges, *r.Latency)
		}
	}
	if len(ages) < 10 || misses > len(ages)/4 {
		t.Fatalf("read the clock in %d frames, missed it in %d (last error: %v)", len(ages), misses, lastErr)
	}
	slices.Sort(ages)
	slices.Sort(edges)
	med, worst := ages[len(ages)/2], ages[len(ages)-1]
	edge := -1.0
	if len(edges) > 0 {
		edge = edges[len(edges)/2]
	}
	t.Logf("%s page, glass to glass: median %.3f s, worst %.3f s over %d frames (buffered edge median %.3f s); first frame %.0f ms after navigation; %d stalls",
		what, med, worst, len(ages), edge, first, browser.MustEval[int](p, `window.mediapipe.stalls`))
	return med
}
