package hlssink_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
	"github.com/mediapipe/mediapipe/stages/hlssink"
)

// httpc is every request's client: a response, body included, ends in time.
var httpc = &http.Client{Timeout: testrun.FFmpegLimit}

type sink struct {
	stage *hlssink.Stage
	h     *stagetest.Harness
	env   *core.Env
	base  string
	nsync int
}

// startSink runs an hls-sink with raw parameters (listen is added).
func startSink(t testing.TB, raw map[string]any) *sink {
	t.Helper()
	if raw == nil {
		raw = map[string]any{}
	}
	raw["listen"] = "127.0.0.1:0"
	env := core.TestEnv("hls-sink")
	env.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	st := stagetest.Build(t, "hls-sink", raw, env).(*hlssink.Stage)
	h := stagetest.Start(t, st, env, false)
	scheme := "http"
	if raw["cert"] != nil {
		scheme = "https"
	}
	return &sink{stage: st, h: h, env: env, base: scheme + "://" + st.Addr().String()}
}

func (s *sink) send(st *core.Stream, tag []byte) {
	hdr, _ := flv.ParseHeader(tag)
	s.h.SendData(st, hdr.Type, hdr.Timestamp, tag)
}

// feed sends tags; with pace, each when its timestamp is due (speed times
// real time), else all at once.
func (s *sink) feed(ctx context.Context, st *core.Stream, tags [][]byte, speed float64) {
	start := time.Now()
	for _, tag := range tags {
		if speed > 0 {
			hdr, _ := flv.ParseHeader(tag)
			due := start.Add(time.Duration(float64(hdr.Timestamp) / speed * float64(time.Millisecond)))
			select {
			case <-time.After(time.Until(due)):
			case <-ctx.Done():
				return
			}
		}
		s.send(st, tag)
	}
}

// sync returns once Run has handled everything sent before: it starts a
// stream of its own, waits until the sink lists it (Run takes its input in
// order) and ends it.
func (s *sink) sync(t testing.TB) {
	t.Helper()
	s.nsync++
	name := fmt.Sprintf("sync/%d", s.nsync)
	st := s.h.StartStream(name)
	testrun.Eventually(t, testrun.WaitLimit, "the sink to catch up", func() bool {
		for _, in := range s.stage.Streams() {
			if in.Name == name {
				return true
			}
		}
		return false
	})
	s.h.EndStream(st)
}

// feedAll sends tags at once and waits until the sink has taken them.
func (s *sink) feedAll(t testing.TB, st *core.Stream, tags [][]byte) {
	t.Helper()
	s.feed(context.Background(), st, tags, 0)
	s.sync(t)
}

func (s *sink) drops(reason string) float64 { return s.env.Metrics.Drop(reason).Value() }

// get fetches url and returns status and body.
func get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := httpc.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// decodedVideo decodes the first video stream of input and returns one
// hash per picture: what a viewer sees, whatever the container.
func decodedVideo(t testing.TB, input string, extra ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testrun.FFmpegLimit)
	defer cancel()
	args := append([]string{"-hide_banner", "-loglevel", "error", "-nostdin"}, extra...)
	args = append(args, "-i", input, "-map", "0:v:0", "-f", "framemd5", "-")
	cmd := exec.CommandContext(ctx, "ffmpeg", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("decoding %s: %v\n%s", input, err, stderr.String())
	}
	frames, err := testmedia.ParseFrameMD5(stdout.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	hashes := make([]string, len(frames))
	for i, f := range frames {
		hashes[i] = f.Hash
	}
	return hashes
}

// joinedRun checks that got is a run of want's pictures: from some picture
// on (the join), every one in order, at least min of them; it returns where
// the run starts in want.
func joinedRun(t testing.TB, got, want []string, min int) int {
	t.Helper()
	if len(got) < min {
		t.Fatalf("got %d pictures, want at least %d", len(got), min)
	}
	at := -1
	for i, h := range want {
		if h == got[0] {
			at = i
			break
		}
	}
	if at < 0 {
		t.Fatalf("the first picture played (%s) is not one that was published", got[0])
	}
	for i, h := range got {
		if at+i >= len(want) || want[at+i] != h {
			t.Fatalf("picture %d played differs from picture %d published (join at %d of %d; %d played)", i, at+i, at, len(want), len(got))
		}
	}
	return at
}

var variants = []string{"lowLatency", "fmp4", "mpegts"}

// TestPlaysPublishedPictures: for each variant, a stream fed through the
// sink at real time and read by ffmpeg from its playlist while live shows
// the published pictures, every one from the join to the end, and ffmpeg
// stops by itself at the end (#EXT-X-ENDLIST).
func TestPlaysPublishedPictures(t *testing.T) {
	clip := testmedia.Clip(t, testmedia.Options{Seconds: 6})
	tags := testmedia.Tags(t, clip)
	want := decodedVideo(t, clip)
	for _, variant := range variants {
		t.Run(variant, func(t *testing.T) {
			t.Parallel()
			s := startSink(t, map[string]any{"variant": variant})
			st := s.h.StartStream("live/movie")
			s.sync(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			fed := make(chan struct{})
			go func() {
				defer close(fed)
				s.feed(ctx, st, tags, 2)
			}()
			url := s.base + "/live/movie/index.m3u8"
			// The playlist request waits until there is a segment.
			code, pl := get(t, url)
			if code != http.StatusOK || !strings.HasPrefix(pl, "#EXTM3U") {
				t.Fatalf("GET %s: %d %q", url, code, pl)
			}
			played := make(chan []string, 1)
			go func() { played <- decodedVideo(t, url) }()
			testrun.Within(t, fed, testrun.WaitLimit, "the clip to be fed")
			s.h.EndStream(st)
			got := testrun.Within(t, played, testrun.FFmpegLimit, "ffmpeg to end with the stream")
			at := joinedRun(t, got, want, 30)
			if at+len(got) != len(want) {
				t.Errorf("played pictures %d..%d of %d: the end is missing", at, at+len(got), len(want))
			}
			t.Logf("%s: joined at picture %d, played %d", variant, at, len(got))
		})
	}
}
