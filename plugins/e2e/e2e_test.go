// Package e2e runs a cloud→edge relay with the stream-filter example plugin
// after flv-reassembler while ffmpeg pushes, as a user would set it up.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
	"github.com/mediapipe/mediapipe/plugins/bridge"
	_ "github.com/mediapipe/mediapipe/stages/flvreassembler"
	_ "github.com/mediapipe/mediapipe/stages/flvtagger"
	_ "github.com/mediapipe/mediapipe/stages/httpflvsink"
	_ "github.com/mediapipe/mediapipe/stages/quicretransmit"
	_ "github.com/mediapipe/mediapipe/stages/rtmpsource"
	_ "github.com/mediapipe/mediapipe/stages/rtpfragmenter"
	_ "github.com/mediapipe/mediapipe/stages/rtpreorder"
	_ "github.com/mediapipe/mediapipe/stages/udpsink"
	_ "github.com/mediapipe/mediapipe/stages/udpsource"
)

// start runs toml (relative paths against dir, where the plugin is built)
// until the test ends.
func start(t *testing.T, name, dir, toml string) *core.Runtime {
	t.Helper()
	return testrun.Start(t, name, toml, nil, testrun.Dir(dir), testrun.StopWithin(15*time.Second)).RT
}

func pluginStage(t *testing.T, rt *core.Runtime) *bridge.Stage {
	t.Helper()
	for _, p := range rt.Pipelines {
		for _, rs := range p.Stages {
			if st, ok := rs.Stage.(*bridge.Stage); ok {
				return st
			}
		}
	}
	t.Fatal("no plugin stage in the runtime")
	return nil
}

func status(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// videoTags keeps video tags minus the AVC end-of-sequence marker ffmpeg
// writes itself at the end of every FLV it muxes.
func videoTags(tags [][]byte) [][]byte {
	var out [][]byte
	for _, tag := range tags {
		if tag[0]&0x1f != flv.TypeVideo {
			continue
		}
		if len(tag) > flv.HeaderSize+1 && tag[flv.HeaderSize+1] == flv.AVCEndOfSequence {
			continue
		}
		out = append(out, tag)
	}
	return out
}

// TestRelayWithStreamFilterPlugin: cloud rtmp-source → flv-tagger →
// rtp-fragmenter → quic-retransmit → udp-sink; edge udp-source → rtp-reorder
// → flv-reassembler → plugin stream-filter (drop_audio, allow live/*) →
// httpflv-sink. ffmpeg pushes live/movie and other/feed.
func TestRelayWithStreamFilterPlugin(t *testing.T) {
	testmedia.NeedFFmpeg(t)
	dir := t.TempDir()
	// Look at the plugin's sources so go test's cache notices their changes
	// (the build below runs in a child process).
	for _, root := range []string{"..", "../../core"} {
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(path, ".go") {
				_, _ = os.Stat(path)
			}
			return nil
		})
	}
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "stream-filter"), "../examples/stream-filter")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	rtmp, rtx, udp, httpAddr := testrun.FreeTCP(t), testrun.FreeUDP(t), testrun.FreeUDP(t), testrun.FreeTCP(t)
	// Runs after the runtimes stopped (cleanups run last-registered first).
	var lastPID int
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for lastPID > 0 && syscall.Kill(lastPID, 0) == nil {
			if time.Now().After(deadline) {
				t.Errorf("plugin process %d left behind after shutdown", lastPID)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	edge := start(t, "edge.toml", dir, fmt.Sprintf(`
[[pipeline]]
name = "edge"
  [[pipeline.stage]]
  use = "udp-source"
  listen = %q
  [[pipeline.stage]]
  use = "rtp-reorder"
  retransmit = %q
  latency = "150ms"
  [[pipeline.stage]]
  use = "flv-reassembler"
  [[pipeline.stage]]
  plugin = "./stream-filter"
  drop_audio = true
  allow = ["live/*"]
  [[pipeline.stage]]
  use = "httpflv-sink"
  listen = %q
`, udp, rtx, httpAddr))
	start(t, "cloud.toml", dir, testrun.CloudTOML(rtmp, rtx, udp))

	clip := testmedia.Clip(t, testmedia.Options{Seconds: 8})
	want := videoTags(testmedia.Tags(t, clip))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	movie := testmedia.Push(t, ctx, clip, "rtmp://"+rtmp+"/live/movie", true)
	other := testmedia.Push(t, ctx, clip, "rtmp://"+rtmp+"/other/feed", true)

	movieURL := "http://" + httpAddr + "/live/movie.flv"
	otherURL := "http://" + httpAddr + "/other/feed.flv"
	testrun.WaitPlayable(t, movieURL, 10*time.Second)
	first := testrun.Watch(movieURL)

	// Kill the plugin mid-stream: it comes back and the stream goes on.
	stage := pluginStage(t, edge)
	pid := stage.PID()
	time.Sleep(1500 * time.Millisecond) // let the viewer get well into the stream
	before := first.Count()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for stage.PID() == pid || stage.PID() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("plugin not restarted within 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	lastPID = stage.PID()
	second := testrun.Watch(movieURL)

	// A stream outside allow is never served.
	for range 10 {
		if code := status(otherURL); code == 200 {
			t.Fatalf("%s answered 200: a stream outside allow was served", otherURL)
		}
		time.Sleep(100 * time.Millisecond)
	}

	if err := movie.Wait(); err != nil {
		t.Fatalf("ffmpeg push: %v\n%s", err, testmedia.Stderr(movie))
	}
	_ = other.Wait()
	got1 := first.Wait(t, 15*time.Second)
	got2 := second.Wait(t, 15*time.Second)

	if n := len(got1); n <= before+30 {
		t.Errorf("the first viewer got %d tags, %d before the kill: the stream did not go on", n, before)
	}
	for who, got := range map[string][][]byte{"viewer before the kill": got1, "viewer after the restart": got2} {
		// No audio frames. (An AAC sequence header may lead the response: the
		// plugin strips it from the stream's init tags, but a viewer joining
		// in the instant between the init arriving and the stripped init
		// coming back can still be sent it.)
		var audio int
		for _, tag := range got {
			if tag[0]&0x1f == flv.TypeAudio {
				if a, _ := flv.ParseAudio(tag[flv.HeaderSize:]); !a.IsSequenceHeader() {
					audio++
				}
			}
		}
		if audio > 0 {
			t.Errorf("%s got %d audio frames with drop_audio", who, audio)
		}
		// Every video tag is one of the clip's, byte for byte, in order.
		video := videoTags(got)
		j := 0
		for i, tag := range video {
			for j < len(want) && !bytes.Equal(want[j], tag) {
				j++
			}
			if j == len(want) {
				h, _ := flv.ParseHeader(tag)
				t.Fatalf("%s: video tag %d (ts %d, %d bytes) is not the clip's next tag", who, i, h.Timestamp, h.DataSize)
			}
		}
		if len(video) < 60 {
			t.Errorf("%s got only %d video tags", who, len(video))
		}
	}
	// What the plugin passed after its restart is whole: the second viewer
	// (joined after it) ends with a long run of the clip's last tags, byte
	// for byte. Its cached GOP may reach back across the kill.
	v2 := videoTags(got2)
	run := 0
	for run < len(v2) && run < len(want) && bytes.Equal(v2[len(v2)-1-run], want[len(want)-1-run]) {
		run++
	}
	if run < 90 {
		t.Errorf("viewer after the restart: only its last %d of %d video tags are the clip's last ones", run, len(v2))
	}
	if r := edge.CounterSum("mediapipe_stage_events_total", map[string]string{"event": "restarts"}); r != 1 {
		t.Errorf("restarts = %v, want 1", r)
	}
}
