// Package e2etest runs sr-enhancer inside a whole relay built from pipeline
// text: ffmpeg pushes RTMP to the cloud, a viewer reads HTTP-FLV at the edge.
package e2etest

import (
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
	_ "github.com/mediapipe/mediapipe/stages/all"
	"github.com/mediapipe/mediapipe/stages/srenhancer/internal/srtest"
)

const relay = `
[[pipeline]]
name = "cloud"
  [[pipeline.stage]]
  use = "rtmp-source"
  listen = %[1]q
  [[pipeline.stage]]
  use = "flv-tagger"
  [[pipeline.stage]]
  use = "sr-enhancer"
  backend = "http"
  url = %[5]q
  [[pipeline.stage]]
  use = "rtp-fragmenter"
  [[pipeline.stage]]
  use = "quic-retransmit"
  listen = %[2]q
  cache_packets = 20000
  [[pipeline.stage]]
  use = "udp-sink"
  destinations = [%[3]q]

[[pipeline]]
name = "edge"
  [[pipeline.stage]]
  use = "udp-source"
  listen = %[3]q
  [[pipeline.stage]]
  use = "rtp-reorder"
  retransmit = %[2]q
  latency = "150ms"
  [[pipeline.stage]]
  use = "flv-reassembler"
  [[pipeline.stage]]
  use = "httpflv-sink"
  listen = %[4]q
`

// TestRelayViewerSeesBackendKeyframes: a viewer joining at the edge after
// the stream started gets 1280×720 video that decodes cleanly, and every
// keyframe it decodes carries the stand-in backend's mark.
func TestRelayViewerSeesBackendKeyframes(t *testing.T) {
	testrun.Exclusive(t) // the backend must answer within a GOP's budget
	clip := testmedia.Clip(t, testmedia.Options{Seconds: 6})
	srv := srtest.StandIn(t, "ok")
	rtmp, rtx, udp, web := testrun.FreeTCP(t), testrun.FreeUDP(t), testrun.FreeUDP(t), testrun.FreeTCP(t)
	text := fmt.Sprintf(relay, rtmp, rtx, udp, web, srv.URL+"/sr")
	r := testrun.Start(t, "relay.toml", text, nil, testrun.StopWithin(15*time.Second))

	push := exec.Command("ffmpeg", "-v", "error", "-re", "-i", clip, "-c", "copy", "-f", "flv", "rtmp://"+rtmp+"/live/movie")
	if err := push.Start(); err != nil {
		t.Fatal(err)
	}
	defer push.Process.Kill()
	url := "http://" + web + "/live/movie.flv"
	srtest.WaitFor(t, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 15*time.Second, "the edge to serve the stream")

	out := filepath.Join(t.TempDir(), "viewer.flv")
	view := exec.Command("ffmpeg", "-v", "error", "-i", url, "-c", "copy", "-f", "flv", out)
	if err := view.Start(); err != nil {
		t.Fatal(err)
	}
	defer view.Process.Kill()
	if err := push.Wait(); err != nil {
		t.Fatalf("publisher: %v", err)
	}
	viewDone := make(chan error, 1)
	go func() { viewDone <- view.Wait() }()
	select {
	case err := <-viewDone:
		if err != nil {
			t.Fatalf("viewer: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the viewer's response did not end with the stream")
	}

	srtest.CheckClean(t, out, 1280, 720)
	pics := srtest.KeyframePictures(t, out, 1280, 720)
	if len(pics) < 3 {
		t.Fatalf("the viewer decoded %d keyframes, want at least 3", len(pics))
	}
	// Every keyframe carries the backend's mark, unless the backend missed
	// its budget for it, which the stage counts (and upscales the frame
	// conventionally): on a machine starved of CPU by other tests that can
	// happen, and is then no fault of the relay.
	var unmarked []int
	for i, pic := range pics {
		if !srtest.Marked(pic, 1280) {
			unmarked = append(unmarked, i)
		}
	}
	skipped := r.RT.CounterSum("mediapipe_sr_skipped_keyframes_total", nil)
	if len(unmarked) == len(pics) || float64(len(unmarked)) > skipped {
		t.Errorf("keyframes %v of %d lack the backend's mark; the stage counted %v skipped", unmarked, len(pics), skipped)
	} else if len(unmarked) > 0 {
		t.Logf("keyframes %v of %d upscaled conventionally: the backend missed its budget (%v counted skipped)", unmarked, len(pics), skipped)
	}
}
