package hlssink_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/internal/relaytoml"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
	_ "github.com/mediapipe/mediapipe/stages/all"
)

// TestPipelineFromPublisher: ffmpeg publishes a clip over RTMP to a
// pipeline ending in hls-sink; a viewer joining mid-stream with ffmpeg
// plays the published pictures from its join to the publisher's end, where
// the playlist ends and ffmpeg stops by itself.
func TestPipelineFromPublisher(t *testing.T) {
	clip := testmedia.Clip(t, testmedia.Options{Seconds: 8})
	want := decodedVideo(t, clip)
	rtmp, web := testrun.FreeTCP(t), testrun.FreeTCP(t)
	testrun.Start(t, "hls.toml", publishToHLS(rtmp, web), nil)
	ctx, cancel := context.WithTimeout(context.Background(), testrun.FFmpegLimit)
	defer cancel()
	pub := testmedia.Push(t, ctx, clip, "rtmp://"+rtmp+"/live/movie", true)
	url := "http://" + web + "/live/movie/index.m3u8"
	testrun.Eventually(t, testrun.WaitLimit, "the playlist", func() bool {
		resp, err := httpc.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	time.Sleep(2 * time.Second) // a join mid-stream, at the newest segment
	got := decodedVideo(t, url, "-live_start_index", "-1")
	at := joinedRun(t, got, want, 60)
	if at == 0 {
		t.Errorf("joined at the first picture: not mid-stream")
	}
	if at+len(got) != len(want) {
		t.Errorf("played pictures %d..%d of %d: the end is missing", at, at+len(got), len(want))
	}
	if err := pub.Wait(); err != nil {
		t.Errorf("publisher: %v\n%s", err, testmedia.Stderr(pub))
	}
	t.Logf("joined at picture %d of %d, played %d", at, len(want), len(got))
	if _, pl := get(t, strings.TrimSuffix(url, "index.m3u8")+"video1_stream.m3u8"); !strings.Contains(pl, "#EXT-X-ENDLIST") {
		t.Errorf("the publisher ended but the playlist does not:\n%s", pl)
	}
}

// publishToHLS is a pipeline file: rtmp-source on rtmp → flv-tagger →
// hls-sink on web, every other parameter its default.
func publishToHLS(rtmp, web string) string {
	return relaytoml.Direct("hls", rtmp, "hls-sink", web, "")
}
