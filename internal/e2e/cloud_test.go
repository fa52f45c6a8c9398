package e2e

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// TestCloudFileOnTheWire runs the shipped pipelines/cloud.toml (ports moved
// by environment overrides, as an operator would) and reads the wire with a
// plain UDP socket: every tag ffmpeg pushed leaves as RTP in the contract's
// format, and SDES names the stream before its first RTP packet.
func TestCloudFileOnTheWire(t *testing.T) {
	testmedia.NeedFFmpeg(t)
	if testing.Short() {
		t.Skip("pushes real media")
	}
	clip := testmedia.Clip(t, clipOpts)
	want := testmedia.Tags(t, clip)

	w := listenWire(t)
	rtmp := testrun.FreeTCP(t)
	env := []string{
		"MEDIAPIPE_ADMIN_LISTEN=" + testrun.FreeTCP(t),
		"MEDIAPIPE_PIPELINE_CLOUD_STAGE_1_LISTEN=" + rtmp,
		"MEDIAPIPE_PIPELINE_CLOUD_STAGE_4_LISTEN=" + testrun.FreeUDP(t),
		"MEDIAPIPE_PIPELINE_CLOUD_STAGE_5_DESTINATIONS=" + w.conn.LocalAddr().String(),
	}
	data, err := os.ReadFile("../../pipelines/cloud.toml")
	if err != nil {
		t.Fatal(err)
	}
	testrun.Start(t, "pipelines/cloud.toml", string(data), env)

	push := testmedia.Push(t, context.Background(), clip, "rtmp://"+rtmp+"/live/wire", false)
	if err := push.Wait(); err != nil {
		t.Fatalf("push: %v", err)
	}
	_, got := w.ended(t, "live/wire", 10*time.Second)
	sameMedia(t, "live/wire", got, want)
}
