package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// TestRecordingThroughLoss records a stream on an edge behind 10% loss: the
// file holds every packet of the clip (framemd5 equal) and ffprobe reads it.
func TestRecordingThroughLoss(t *testing.T) {
	relayTest(t)
	clip := testmedia.Clip(t, clipOpts)
	dir := t.TempDir()
	a := newAddrs(t)
	testrun.Start(t, "cloud.toml", cloudTOML(a), nil)
	edge := testrun.Start(t, "recorder.toml", edgeTOML("recorder", a, "  drop = 0.10\n  seed = 3",
		fmt.Sprintf("  [[pipeline.stage]]\n  use = \"flv-file-sink\"\n  dir = %q\n", dir)), nil)
	push := testmedia.Push(t, context.Background(), clip, "rtmp://"+a.RTMP+"/live/rec", true)
	if err := push.Wait(); err != nil {
		t.Fatalf("push: %v\n%s", err, testmedia.Stderr(push))
	}
	// The recording is finished when the stream's end reaches the sink.
	var files []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		files, _ = filepath.Glob(filepath.Join(dir, "live", "rec-*.flv"))
		if len(files) == 1 && len(edge.RT.Pipelines[0].Streams()) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("recordings %v; stream still live: %v", files, edge.RT.Pipelines[0].Streams())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Stop the edge so the sink has surely closed the file.
	if err := edge.Stop(); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ffprobe", "-v", "error", "-show_format", files[0]).CombinedOutput(); err != nil {
		t.Fatalf("ffprobe: %v\n%s", err, out)
	}
	got, want := testmedia.FrameMD5(t, files[0]), testmedia.FrameMD5(t, clip)
	frameSuffix(t, "recording", got, want, len(want))
	testmedia.DecodeClean(t, files[0])
}
