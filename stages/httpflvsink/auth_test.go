package httpflvsink_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
	"github.com/mediapipe/mediapipe/stages/httpflvsink"
	"github.com/mediapipe/mediapipe/stages/internal/authhook"
	"github.com/mediapipe/mediapipe/stages/internal/authhook/authhooktest"
)

func authStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := httpc.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// startAuthSink is startSink with the spec's defaults for raw and a
// logger of the test's.
func startAuthSink(t *testing.T, raw map[string]any, env *core.Env) *sink {
	t.Helper()
	raw["listen"] = "127.0.0.1:0"
	st := stagetest.Build(t, "httpflv-sink", raw, env)
	h := stagetest.Start(t, st, env, false)
	return &sink{stage: st, h: h, env: env, base: "http://" + st.(*httpflvsink.Stage).Addr().String()}
}

func authCount(s *sink, result string) float64 {
	return core.CounterValue(s.env.Metrics.Counter("auth_" + result))
}

// An HTTP-FLV viewer meets auth_url beside play_key: a refusing hook keeps
// an ffmpeg viewer out (403, or 401 as the hook answered), an admitting one
// lets it play the whole stream and is told who asked; a wrong play key
// never reaches the hook.
func TestAuthHookViewer(t *testing.T) {
	clip := testmedia.Clip(t, testmedia.Options{Seconds: 1})
	tags := testmedia.Tags(t, clip)
	hook := authhooktest.New(t, http.StatusForbidden)
	s := startSink(t, httpflvsink.Config{GOPCache: true, PlayKey: "pk", AuthURL: hook.URL + "/auth"})
	st := s.h.StartStream("live/a")

	res := testrun.Within(t, testmedia.View(t, s.base+"/live/a.flv?key=pk&token=T1", testrun.FFmpegLimit), testrun.FFmpegLimit, "refused ffmpeg viewer")
	if res.Err == nil || !strings.Contains(res.Stderr, "403") {
		t.Fatalf("refused viewer: err %v\n%s", res.Err, res.Stderr)
	}
	if got := authStatus(t, s.base+"/live/a.flv?key=nope&token=T1"); got != 403 || hook.Calls() != 1 {
		t.Fatalf("wrong play key: %d after %d hook calls", got, hook.Calls())
	}
	hook.SetStatus(http.StatusUnauthorized)
	if got := authStatus(t, s.base+"/live/a.flv?key=pk&token=T2"); got != 401 {
		t.Fatalf("hook answered 401, viewer got %d", got)
	}
	if s.viewers() != 0 || core.CounterValue(s.env.Metrics.Counter("viewers_served")) != 0 {
		t.Fatal("a refused viewer was served")
	}

	hook.SetStatus(http.StatusOK)
	// The stream is served (HEAD answers 200); the admit is kept for the
	// viewer's question, asked with the same query.
	testrun.Eventually(t, testrun.WaitLimit, "the stream served", func() bool { return testrun.Head(s.base+"/live/a.flv?key=pk&token=T3") == 200 })
	done := testmedia.View(t, s.base+"/live/a.flv?key=pk&token=T3", testrun.FFmpegLimit)
	testrun.Eventually(t, testrun.WaitLimit, "ffmpeg to join", func() bool { return s.viewers() == 1 })
	for _, tag := range tags {
		s.send(st, tag)
	}
	s.h.EndStream(st)
	res = testrun.Within(t, done, testrun.FFmpegLimit, "admitted ffmpeg viewer")
	if res.Err != nil {
		t.Fatalf("admitted viewer: %v\n%s", res.Err, res.Stderr)
	}
	want, stderr, err := testmedia.FrameMD5Err(context.Background(), clip, "-copyts")
	if err != nil {
		t.Fatalf("framemd5 of the clip: %v\n%s", err, stderr)
	}
	if len(res.Frames) != len(want) {
		t.Fatalf("admitted viewer decoded %d packets, the clip has %d", len(res.Frames), len(want))
	}
	for i := range want {
		if res.Frames[i].Hash != want[i].Hash {
			t.Fatalf("packet %d differs: %v, want %v", i, res.Frames[i], want[i])
		}
	}
	reqs := hook.Requests()
	last := reqs[len(reqs)-1]
	if len(reqs) != 3 || last.Action != "play" || last.Protocol != "http-flv" || last.Stream != "live/a" ||
		last.Query["token"] != "T3" || last.Query["key"] != "pk" || !strings.HasPrefix(last.Client, "127.0.0.1:") ||
		last.Stage != "httpflv-sink" {
		t.Errorf("hook calls %+v", reqs)
	}
	if authCount(s, "refuse") != 2 || authCount(s, "admit") < 2 || authCount(s, "cached") < 1 {
		t.Errorf("auth_refuse %v, auth_admit %v", authCount(s, "refuse"), authCount(s, "admit"))
	}
}

// A hook that hangs is cut at auth_timeout: the viewer is refused (403),
// or admitted with auth_fail_open.
func TestAuthHookHangs(t *testing.T) {
	hook := authhooktest.New(t, http.StatusOK)
	hook.Hang()
	const timeout = 300 * time.Millisecond
	for _, open := range []bool{false, true} {
		s := startSink(t, httpflvsink.Config{AuthURL: hook.URL, AuthTimeout: timeout, AuthFailOpen: open})
		s.h.StartStream("live/a")
		start := time.Now()
		got := authStatus(t, s.base+"/live/a.flv")
		took := time.Since(start)
		want, result := 403, "error_refused"
		if open {
			want, result = 200, "error_admitted"
		}
		if got != want || took < timeout || took > timeout+5*time.Second {
			t.Errorf("fail_open %v: %d after %v (auth_timeout %v), want %d", open, got, took, timeout, want)
		}
		if authCount(s, result) != 1 {
			t.Errorf("fail_open %v: auth_%s = %v", open, result, authCount(s, result))
		}
	}
}

// A thousand viewers joining one stream at once make at most a handful of
// hook calls; every one is admitted; the token in their URL never reaches
// the log.
func TestAuthHookCrowd(t *testing.T) {
	const viewers = 1000
	hook := authhooktest.New(t, http.StatusOK)
	// The answer takes a while, so the crowd is at the door together.
	hook.SetAnswer(func(*http.Request, authhook.Request) int { time.Sleep(200 * time.Millisecond); return 200 })
	logs := &testrun.LogBuffer{}
	env := core.TestEnv("httpflv-sink")
	env.Log = slog.New(slog.NewTextHandler(logs, nil))
	s := startAuthSink(t, map[string]any{"gop_cache": true, "auth_url": hook.URL}, env)
	st := s.h.StartStream("live/crowd")
	s.sync(t) // its HEAD requests are admitted: one call, one admit
	calls0, admits0 := hook.Calls(), authCount(s, "admit")
	tr := &http.Transport{DisableKeepAlives: true, MaxConnsPerHost: 0}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: testrun.WaitLimit}
	var wg sync.WaitGroup
	var ok, failed atomic.Int32
	start := make(chan struct{})
	for range viewers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := client.Get(s.base + "/live/crowd.flv?token=CROWDSECRET")
			if err != nil {
				failed.Add(1)
				return
			}
			if resp.StatusCode == 200 {
				ok.Add(1)
			}
			resp.Body.Close()
		}()
	}
	close(start)
	wg.Wait()
	s.h.EndStream(st)
	if n := hook.Calls() - calls0; n < 1 || n > 3 {
		t.Errorf("%d viewers made %d hook calls, want 1 to 3", viewers, n)
	}
	if ok.Load() != viewers {
		t.Errorf("%d of %d viewers admitted (%d failed to connect)", ok.Load(), viewers, failed.Load())
	}
	if got := authCount(s, "admit") - admits0; got != viewers {
		t.Errorf("auth_admit = %v, want %d", got, viewers)
	}
	t.Logf("%d viewers, %d hook calls, %v answered from the cache or a call in flight", viewers, hook.Calls()-calls0, authCount(s, "cached"))
	// One refusal to log, with its query keys only.
	hook.SetStatus(http.StatusForbidden)
	if got := authStatus(t, s.base+"/live/crowd.flv?token=OTHERSECRET"); got != 403 {
		t.Fatalf("refused viewer got %d", got)
	}
	if out := logs.String(); strings.Contains(out, "SECRET") || !strings.Contains(out, "query_keys=token") {
		t.Errorf("log:\n%s", out)
	}
}
