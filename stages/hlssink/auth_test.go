package hlssink_test

import (
	"log/slog"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
	"github.com/mediapipe/mediapipe/stages/hlssink"
	"github.com/mediapipe/mediapipe/stages/internal/authhook/authhooktest"
)

// An HLS viewer meets auth_url beside play_key: a refusing hook keeps an
// ffmpeg player out (403, or 401 as the hook answered); an admitting one
// lets it play every published picture, and the whole playback (playlists,
// init, segments, parts, LL-HLS directives in the query) costs one call, as
// the answer is kept per (stream, query without _HLS_ directives); a hook
// that hangs is cut at auth_timeout. The query's values never reach the log.
func TestAuthHook(t *testing.T) {
	testmedia.NeedFFmpeg(t)
	clip := testmedia.Clip(t, testmedia.Options{Seconds: 3})
	tags := testmedia.Tags(t, clip)
	hook := authhooktest.New(t, http.StatusForbidden)
	logs := &testrun.LogBuffer{}
	env := core.TestEnv("hls-sink")
	env.Log = slog.New(slog.NewTextHandler(logs, nil))
	const timeout = 500 * time.Millisecond
	raw := map[string]any{"listen": "127.0.0.1:0", "play_key": "pk", "auth_url": hook.URL + "/auth", "auth_timeout": "500ms"}
	st := stagetest.Build(t, "hls-sink", raw, env).(*hlssink.Stage)
	s := &sink{stage: st, h: stagetest.Start(t, st, env, false), env: env, base: "http://" + st.Addr().String()}
	cs := s.h.StartStream("live/a")
	s.feedAll(t, cs, tags)
	s.h.EndStream(cs)
	base := s.base + "/live/a/"

	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-i", base+"index.m3u8?key=pk&token=T1", "-f", "null", "-")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "403") {
		t.Fatalf("refused ffmpeg player: %v\n%s", err, out)
	}
	if code, _ := get(t, base+"index.m3u8?key=nope&token=T1"); code != 403 || hook.Calls() != 1 {
		t.Fatalf("wrong play key: %d after %d hook calls", code, hook.Calls())
	}
	hook.SetStatus(http.StatusUnauthorized)
	if code, _ := get(t, base+"index.m3u8?key=pk&token=T2"); code != 401 {
		t.Fatalf("hook answered 401, player got %d", code)
	}

	hook.SetStatus(http.StatusOK)
	requests0 := core.CounterValue(env.Metrics.Counter("requests"))
	got := decodedVideo(t, base+"index.m3u8?key=pk&token=T3")
	want := decodedVideo(t, clip)
	joinedRun(t, got, want, len(want))
	// An LL-HLS blocking reload with its directives is the same question.
	if code, _ := get(t, base+"video1_stream.m3u8?key=pk&token=T3&_HLS_msn=0&_HLS_part=0"); code != 200 {
		t.Errorf("LL-HLS reload: %d", code)
	}
	requests := core.CounterValue(env.Metrics.Counter("requests")) - requests0
	if n := hook.Calls(); n != 3 || requests < 5 {
		t.Errorf("playback made %v requests and %d hook calls in all, want 3 (one per question)", requests, n)
	}
	t.Logf("playback: %v requests, %d hook calls in all", requests, hook.Calls())
	reqs := hook.Requests()
	last := reqs[len(reqs)-1]
	if last.Action != "play" || last.Protocol != "hls" || last.Stream != "live/a" || len(last.Query) != 2 ||
		last.Query["token"] != "T3" || last.Query["key"] != "pk" || !strings.HasPrefix(last.Client, "127.0.0.1:") || last.Stage != "hls-sink" {
		t.Errorf("hook asked %+v", last)
	}

	hook.Hang()
	start := time.Now()
	if code, _ := get(t, base+"index.m3u8?key=pk&token=T4"); code != 403 {
		t.Errorf("hanging hook: %d, want 403", code)
	}
	if took := time.Since(start); took < timeout || took > timeout+5*time.Second {
		t.Errorf("hanging hook answered after %v, auth_timeout %v", took, timeout)
	}
	for result, want := range map[string]float64{"refuse": 2, "error_refused": 1} {
		if got := core.CounterValue(env.Metrics.Counter("auth_" + result)); got != want {
			t.Errorf("auth_%s = %v, want %v", result, got, want)
		}
	}
	if admits := core.CounterValue(env.Metrics.Counter("auth_admit")); admits != requests {
		t.Errorf("auth_admit = %v, want one per request (%v)", admits, requests)
	}
	if out := logs.String(); strings.Contains(out, "token=T") || !strings.Contains(out, "query_keys=key,token") {
		t.Errorf("log:\n%s", out)
	}
}
