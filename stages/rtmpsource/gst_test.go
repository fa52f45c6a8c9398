package rtmpsource_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/stages/rtmpsource"
)

// gstPush publishes clip with GStreamer's rtmp2sink (an independent RTMP
// client beside ffmpeg) and returns its combined output and error.
func gstPush(t *testing.T, clip, url string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("gst-launch-1.0"); err != nil {
		t.Skip("gst-launch-1.0 not found: apt-get install -y gstreamer1.0-tools gstreamer1.0-plugins-bad gstreamer1.0-plugins-good")
	}
	if out, err := exec.Command("gst-inspect-1.0", "rtmp2sink").CombinedOutput(); err != nil {
		t.Skipf("GStreamer has no rtmp2sink (gstreamer1.0-plugins-bad): %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pipe := "filesrc location=" + clip + " ! flvdemux name=d d.video ! queue ! h264parse ! clocksync ! flvmux name=m streamable=true ! rtmp2sink location=" + url +
		" d.audio ! queue ! aacparse ! clocksync ! m."
	cmd := exec.CommandContext(ctx, "gst-launch-1.0", append([]string{"-e"}, strings.Fields(pipe)...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// An rtmp2sink publisher ends orderly (FCUnpublish, deleteStream, then it
// closes the connection itself): it exits 0, its stream is whole and ends,
// and no connection error is counted.
func TestGStreamerPublisherEndsClean(t *testing.T) {
	clip := testmedia.Clip(t, testmedia.Options{Seconds: 2})
	s := startSource(t, rtmpsource.Config{})
	out, err := gstPush(t, clip, s.url+"/live/gst")
	if err != nil {
		t.Fatalf("gst-launch: %v\n%s", err, out)
	}
	data := waitEnd(t, s, "live/gst", 5*time.Second)
	tags, _ := tagAll(t, data)
	want := testmedia.MediaTags(testmedia.Tags(t, clip))
	if got := testmedia.MediaTags(tags); len(got) < len(want)-2 {
		t.Fatalf("relayed %d media tags, the clip has %d", len(got), len(want))
	}
	// The server counts a connection's end once it has closed it, just
	// after the client saw it end: give that a moment to show.
	connErr := s.env.Metrics.Drop("connection_error")
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if n := connErr.Value(); n != 0 {
			t.Fatalf("connection_error counted %v times for an orderly end", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
