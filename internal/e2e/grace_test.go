package e2e

import (
	"fmt"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/internal/browser"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// graceClip is long enough that each publisher pushes its own part of it:
// the first from 0 s, the second from 10 s, the third from 20 s, so every
// packet a viewer gets says by its content which publisher sent it.
var graceClip = testmedia.Options{Seconds: 30}

// pushFrom publishes clip from second `from` on, in real time.
func pushFrom(t *testing.T, clip, url string, from int) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
		"-ss", strconv.Itoa(from), "-i", clip, "-c", "copy", "-f", "flv", url)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting ffmpeg publisher: %v", err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}

// kill ends a publisher abruptly, by its PID, as a crashed encoder or a
// dropped connection does: no unpublish.
func kill(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
}

// TestPublisherReconnect: a publisher killed and back within the cloud's
// reconnect_grace, then back again through a standby cloud (a second
// `mediapipe run` sending the same name to the same edge, from another
// address with another SSRC), leaves the edge's viewers playing: one
// ffmpeg viewer's single HTTP-FLV response has packets of all three
// publishers, each byte for byte a packet of the clip, timestamps never
// going back, and decodes without a complaint; an hls.js page plays on
// across both seams. After the standby's grace the response ends.
func TestPublisherReconnect(t *testing.T) {
	relayTest(t)
	const grace = 3 * time.Second // above the edge's takeover_quiet (1 s)
	clip := testmedia.Clip(t, graceClip)
	clipFrames := testmedia.FrameMD5(t, clip)
	testrun.Binary(t)
	a := newAddrs(t)
	b := addrs{RTMP: testrun.FreeTCP(t), RTX: testrun.FreeUDP(t), UDP: a.UDP}
	hlsAddr := testrun.FreeTCP(t)
	primary := testrun.StartProcess(t, "cloud1.toml", cloudGrace(a, grace), nil)
	standby := testrun.StartProcess(t, "cloud2.toml", cloudGrace(b, grace), nil)
	edge := testrun.StartProcess(t, "edge.toml", fmt.Sprintf(`
[[pipeline]]
name = "edge"
  [[pipeline.stage]]
  use = "udp-source"
  listen = %q
  takeover_quiet = "1s"  # well inside the primary's grace, which still announces the stream
  [[pipeline.stage]]
  use = "rtp-reorder"
  retransmit = [%q, %q]
  latency = "300ms"
  [[pipeline.stage]]
  use = "flv-reassembler"
  id = "edge-flv"
  [[pipeline.stage]]
  use = "httpflv-sink"
  listen = %q

[[pipeline]]
name = "edge-hls"
from = "edge-flv"
  [[pipeline.stage]]
  use = "hls-sink"
  listen = %q
`, a.UDP, a.RTX, b.RTX, a.HTTP, hlsAddr), nil)

	// The browser first: it may wait for another package's browser test,
	// which must not eat into the first publisher's clip.
	page := browser.Start(t)
	pub := pushFrom(t, clip, "rtmp://"+a.RTMP+"/live/g", 0)
	url := "http://" + a.HTTP + "/live/g.flv"
	testrun.WaitPlayable(t, url, 10*time.Second)
	rec := watchFFmpeg(t, url)
	v := testrun.Watch(url)

	page.Navigate("http://" + hlsAddr + "/live/g")
	page.WaitUntil(30*time.Second, "hls.js playing", `window.mediapipe.state === 'playing'`, pageState)
	const now = `document.querySelector('video').currentTime`
	// playsOn waits for the viewer to get 150 more tags (about 2 s of the
	// clip's audio and video) and the page's video to advance a second past
	// where it was.
	playsOn := func(what string) {
		t.Helper()
		n, at := v.Count(), browser.MustEval[float64](page, now)
		testrun.Eventually(t, 15*time.Second, what+": the HTTP-FLV viewer getting media", func() bool { return v.Count() >= n+150 })
		page.WaitUntil(15*time.Second, what+": the hls.js page playing on", fmt.Sprintf(`%s > %f`, now, at+1), pageState)
	}
	playsOn("first publisher")

	kill(t, pub)
	pub = pushFrom(t, clip, "rtmp://"+a.RTMP+"/live/g", 10) // back within the grace
	playsOn("publisher back")

	kill(t, pub)
	pub = pushFrom(t, clip, "rtmp://"+b.RTMP+"/live/g", 20) // the encoder's backup URL: the standby cloud
	playsOn("publisher back through the standby cloud")
	kill(t, pub)
	gone := time.Now()

	select {
	case <-rec.done:
	case <-time.After(grace + 10*time.Second):
		t.Fatalf("the viewer's response did not end %v after the last publisher left (grace %v)", time.Since(gone), grace)
	}
	if d := time.Since(gone); d < grace-time.Second {
		t.Errorf("the viewer's response ended %v after the last publisher left, within the grace (%v)", d, grace)
	}
	if e := browser.MustEval[any](page, `window.mediapipe.error`); e != nil {
		t.Errorf("hls.js page: player error %v", e)
	}
	if rec.err != nil || rec.stderr.String() != "" {
		t.Fatalf("ffmpeg viewer: %v\n%s", rec.err, rec.stderr.String())
	}
	testmedia.DecodeClean(t, rec.path)
	got := testmedia.FrameMD5(t, rec.path)
	inClip := map[string]int64{}
	for _, f := range clipFrames {
		inClip[fmt.Sprint(f.Stream, f.Hash)] = f.DTS
	}
	// Video in the clip's order: each publisher's part runs on frame by
	// frame (no frame lost), and a seam is a jump in the clip (the next
	// publisher pushes from further on).
	last := map[int]int64{}
	var parts []int // video packets of each publisher, in order
	prevClip := int64(-1)
	for i, f := range got {
		dts, ok := inClip[fmt.Sprint(f.Stream, f.Hash)]
		if !ok {
			t.Fatalf("viewer packet %d (%v) is no packet of the clip", i, f)
		}
		if prev, seen := last[f.Stream]; seen && f.DTS < prev {
			t.Fatalf("viewer packet %d (%v): dts goes back from %d", i, f, prev)
		}
		last[f.Stream] = f.DTS
		if f.Stream != 0 {
			continue
		}
		switch step := dts - prevClip; {
		case prevClip < 0 || step > 1000:
			parts = append(parts, 0)
		case step < 0 || step > 40:
			t.Errorf("viewer packet %d: the clip's frame at %d ms follows %d ms: frames lost within a publisher's part", i, dts, prevClip)
		}
		parts[len(parts)-1]++
		prevClip = dts
	}
	t.Logf("viewer: %d packets; video packets of each publisher: %v", len(got), parts)
	if len(parts) != 3 {
		t.Fatalf("%d publishers' parts in the viewer's response, want 3", len(parts))
	}
	for i, n := range parts {
		if n < 30 {
			t.Errorf("publisher %d: %d video packets in the viewer's response, want ≥ 30", i+1, n)
		}
	}
	if n := primary.Sum(t, "mediapipe_stage_reconnects_continued_total", map[string]string{"stage": "rtmp-source"}); n != 1 {
		t.Errorf("primary cloud: reconnects_continued %v, want 1", n)
	}
	if n := edge.Sum(t, "mediapipe_stage_streams_continued_total", map[string]string{"stage": "udp-source"}); n != 1 {
		t.Errorf("edge: streams_continued %v, want 1", n)
	}
	if n := edge.Sum(t, "mediapipe_stage_streams_started_total", map[string]string{"stage": "udp-source"}); n != 1 {
		t.Errorf("edge: streams_started %v, want 1", n)
	}
	// Each cloud held its stream once for a publisher who did not come
	// back to it: the primary when the publisher went to the standby.
	for _, c := range []*testrun.Process{primary, standby} {
		testrun.Eventually(t, 5*time.Second, c.Name+": reconnect_grace_expired 1", func() bool {
			return c.Sum(t, "mediapipe_stage_reconnect_grace_expired_total", map[string]string{"stage": "rtmp-source"}) == 1
		})
	}
}

const pageState = `{mp: window.mediapipe, t: document.querySelector('video') && document.querySelector('video').currentTime}`
