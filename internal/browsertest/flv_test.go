// Package browsertest plays the relay's player pages in headless Chromium,
// as a viewer would: the stream list, the player, its messages.
package browsertest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/internal/browser"
	"github.com/mediapipe/mediapipe/internal/relaytoml"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
	_ "github.com/mediapipe/mediapipe/stages/all"
)

// The clip every test pushes: its size is what the page must show and play.
var clipOpts = testmedia.Options{Seconds: 30, Width: 640, Height: 360, FPS: 30, GOP: 30}

// browserTest skips t under -short: it plays real media in Chromium.
func browserTest(t *testing.T) {
	t.Helper()
	testmedia.NeedFFmpeg(t)
	if testing.Short() {
		t.Skip("plays real media through a relay in chromium")
	}
}

// relay runs the example's cloud and edge in this process and returns the
// edge's viewer address (pages and media) and the cloud's RTMP address.
// edgeExtra is appended to the edge's httpflv-sink table.
func relay(t *testing.T, edgeExtra string) (httpAddr, rtmpAddr string) {
	t.Helper()
	browserTest(t)
	rl := relaytoml.Relay{RTMP: testrun.FreeTCP(t), RTX: testrun.FreeUDP(t), UDP: testrun.FreeUDP(t), HTTP: testrun.FreeTCP(t)}
	dir := t.TempDir()
	testrun.Start(t, "edge.toml", rl.Edge()+edgeExtra, nil, testrun.Dir(dir), testrun.StopWithin(15*time.Second))
	testrun.Start(t, "cloud.toml", rl.Cloud(), nil, testrun.Dir(dir), testrun.StopWithin(15*time.Second))
	return rl.HTTP, rl.RTMP
}

// push publishes the test clip in real time as APP/KEY name.
func push(t *testing.T, rtmpAddr, name string) {
	t.Helper()
	clip := testmedia.Clip(t, clipOpts)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	testmedia.Push(t, ctx, clip, "rtmp://"+rtmpAddr+"/"+name, true)
}

// state is what the player page shows scripts, for failure messages.
const state = `{mp: window.mediapipe, message: (document.getElementById('message')||{}).textContent,
	t: document.querySelector('video') && document.querySelector('video').currentTime}`

// assertPlays checks the page's video plays the clip: time advancing,
// frames decoded, the clip's size, no player error.
func assertPlays(t *testing.T, p *browser.Page) {
	t.Helper()
	p.WaitUntil(20*time.Second, "the player to play", `window.mediapipe.state === 'playing'`, state)
	type sample struct {
		T      float64 `json:"t"`
		Frames int     `json:"frames"`
	}
	const read = `(() => { const v = document.querySelector('video'); return {t: v.currentTime, frames: v.getVideoPlaybackQuality().totalVideoFrames}; })()`
	first := browser.MustEval[sample](p, read)
	p.WaitUntil(10*time.Second, "the video to advance a second and decode 20 frames",
		fmt.Sprintf(`(() => { const v = document.querySelector('video'); return v.currentTime > %f && v.getVideoPlaybackQuality().totalVideoFrames > %d; })()`, first.T+1, first.Frames+20),
		state)
	size := browser.MustEval[[]int](p, `[document.querySelector('video').videoWidth, document.querySelector('video').videoHeight]`)
	if size[0] != clipOpts.Width || size[1] != clipOpts.Height {
		t.Errorf("video is %dx%d, want %dx%d", size[0], size[1], clipOpts.Width, clipOpts.Height)
	}
	if e := browser.MustEval[any](p, `window.mediapipe.error`); e != nil {
		t.Errorf("player error: %v", e)
	}
	if paused := browser.MustEval[bool](p, `document.querySelector('video').paused`); paused {
		t.Errorf("the video is paused")
	}
}

// liveLatency samples the page's latency readout (buffered edge minus
// playhead) 4 times a second for d and returns the median and the largest.
func liveLatency(t *testing.T, p *browser.Page, d time.Duration) (median, worst float64) {
	t.Helper()
	var xs []float64
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if v, err := browser.Eval[*float64](p, `window.mediapipe.latency`); err == nil && v != nil {
			xs = append(xs, *v)
		}
	}
	if len(xs) == 0 {
		t.Fatalf("no latency readout in %v", d)
	}
	slices.Sort(xs)
	return xs[len(xs)/2], xs[len(xs)-1]
}

// TestFLVPage: "/" lists nothing, then the stream once it is pushed,
// without a reload, with its codec and size; its link opens a page that
// plays it; a stream that is not live says so.
func TestFLVPage(t *testing.T) {
	httpAddr, rtmpAddr := relay(t, "")
	base := "http://" + httpAddr
	p := browser.Start(t)

	p.Navigate(base + "/live/nothing")
	p.WaitUntil(10*time.Second, "the not-live message", `window.mediapipe.state === 'offline' && document.getElementById('message').textContent.includes('not live')`, state)

	p.Navigate(base + "/")
	p.WaitUntil(10*time.Second, "the empty list", `document.getElementById('status').textContent.includes('No live streams')`, `document.body.innerText`)
	push(t, rtmpAddr, "live/browser")
	p.WaitUntil(20*time.Second, "the stream listed with codec and size, without a reload",
		`(() => { const r = document.querySelector('#streams tbody tr'); return r && r.textContent.includes('live/browser') && r.textContent.includes('H264') && r.textContent.includes('640×360') && r.textContent.includes('AAC'); })()`,
		`document.body.innerText`)
	p.Click(`#streams a`)
	p.WaitUntil(10*time.Second, "the stream's page", `location.pathname === '/live/browser'`, `location.href`)
	assertPlays(t, p)
	first := browser.MustEval[float64](p, `window.mediapipe.firstFrame`)
	startAt := browser.MustEval[float64](p, `window.mediapipe.startAt`)
	marks := browser.MustEval[map[string]float64](p, `window.mediapipe.marks`)
	med, worst := liveLatency(t, p, 3*time.Second)
	t.Logf("HTTP-FLV page: first frame %.0f ms after navigation (player made at %.0f ms, metadata %.0f, canplay %.0f, playing %.0f); playhead behind the buffered edge: median %.3f s, worst %.3f s",
		first, startAt, marks["loadedmetadata"], marks["canplay"], marks["playing"], med, worst)
	// The page chases the live edge: the players' defaults sit 0.9-1.2 s
	// behind (the GOP cache's backlog never caught up).
	if med > 0.5 {
		t.Errorf("the playhead is a median %.3f s behind the buffered edge, want ≤ 0.5 s", med)
	}
	if first > 3000 { // the target is 1 s; a loaded CI machine gets slack
		t.Errorf("first frame %.0f ms after the page opened, want ≤ 1 s (3 s allowed here)", first)
	}

	// The list counts the page's viewer.
	p.Navigate(base + "/")
	p.WaitUntil(10*time.Second, "the list", `document.querySelector('#streams tbody tr') !== null`, `document.body.innerText`)
	row := browser.MustEval[string](p, `document.querySelector('#streams tbody tr').innerText`)
	if !strings.Contains(row, "kb/s") {
		t.Errorf("row %q has no bitrate", row)
	}
}

// TestFLVPageKey: with play_key set, the pages ask for the key, say when it
// is wrong, and with the right one wait for the stream and play it (the
// key passed on to the media URL).
func TestFLVPageKey(t *testing.T) {
	httpAddr, rtmpAddr := relay(t, "  play_key = \"opensesame\"\n")
	base := "http://" + httpAddr
	p := browser.Start(t)

	p.Navigate(base + "/")
	p.WaitUntil(10*time.Second, "the key form on the list", `!document.getElementById('keyform').hidden && document.body.innerText.includes('need a play key')`, `document.body.innerText`)
	p.Navigate(base + "/?key=nope")
	p.WaitUntil(10*time.Second, "the wrong-key message on the list", `!document.getElementById('keyform').hidden && document.body.innerText.includes('Wrong play key')`, `document.body.innerText`)
	p.Navigate(base + "/live/locked")
	p.WaitUntil(10*time.Second, "the key message on the player", `window.mediapipe.state === 'key' && document.getElementById('message').textContent.includes('needs a play key')`, state)
	p.Navigate(base + "/live/locked?key=nope")
	p.WaitUntil(10*time.Second, "the wrong-key message on the player", `window.mediapipe.state === 'key' && document.getElementById('message').textContent.includes('Wrong play key')`, state)

	// The right key: the page waits for the stream, then plays it.
	p.Navigate(base + "/live/locked?key=opensesame")
	p.WaitUntil(10*time.Second, "the page waiting for the stream", `window.mediapipe.state === 'offline'`, state)
	push(t, rtmpAddr, "live/locked")
	assertPlays(t, p)
}
