package rtmpsource_test

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
	"github.com/mediapipe/mediapipe/stages/internal/authhook/authhooktest"
	"github.com/mediapipe/mediapipe/stages/rtmpsource"
)

// An ffmpeg publisher meets auth_url beside publish_key: a refusing hook
// stops it (ffmpeg exits non-zero, says the publish failed, nothing is
// relayed), an admitting one lets it in and is told who asked (action,
// protocol, stream, query, client); a wrong key never reaches the hook; a
// hanging hook is cut at auth_timeout, refusing, or admitting with
// auth_fail_open. The query's values never reach the log.
func TestAuthHook(t *testing.T) {
	clip := testmedia.Clip(t, testmedia.Options{Seconds: 1})
	hook := authhooktest.New(t, http.StatusForbidden)
	logs := &testrun.LogBuffer{}
	env := core.TestEnv("rtmp-source")
	env.Log = slog.New(slog.NewTextHandler(logs, nil))
	env.Metrics.SetLogger(env.Log)
	const timeout = 500 * time.Millisecond
	cfg := rtmpsource.Config{Listen: "127.0.0.1:0", IdleTimeout: 10 * time.Second, MaxMessageSize: 8 << 20,
		PublishKey: "k1", AuthURL: hook.URL + "/auth", AuthTimeout: timeout}
	built, err := rtmpsource.New(&cfg, env)
	if err != nil {
		t.Fatal(err)
	}
	st := built.(*rtmpsource.Stage)
	s := &source{h: stagetest.Start(t, st, env, true), env: env}
	s.url = "rtmp://" + st.Addr().String()

	refused := func(url string) {
		t.Helper()
		cmd := push(t, url, clip, false)
		if err := cmd.Wait(); err == nil {
			t.Fatalf("%s: publish admitted", url)
		}
		if out := testmedia.Stderr(cmd); !strings.Contains(out, "Publish failed") {
			t.Errorf("ffmpeg does not show the refusal:\n%s", out)
		}
	}
	refused(s.url + "/live/a?key=k1&token=TOKENVALUE")
	if n := hook.Calls(); n != 1 {
		t.Fatalf("%d hook calls, want 1", n)
	}
	refused(s.url + "/live/a?key=wrong&token=TOKENVALUE")
	if n := hook.Calls(); n != 1 {
		t.Fatalf("a wrong publish key reached the hook (%d calls)", n)
	}
	if n := len(s.h.Out.Packets()); n != 0 {
		t.Fatalf("refused publishers relayed %d packets", n)
	}
	got := hook.Requests()[0]
	if got.Action != "publish" || got.Protocol != "rtmp" || got.Stream != "live/a" ||
		got.Query["token"] != "TOKENVALUE" || got.Query["key"] != "k1" || got.Pipeline != "test" || got.Stage != "rtmp-source" ||
		!strings.HasPrefix(got.Client, "127.0.0.1:") {
		t.Errorf("hook asked %+v", got)
	}

	hook.SetStatus(http.StatusNoContent)
	// The refusal is kept for its question for a while: another query is
	// another question.
	cmd := push(t, s.url+"/live/a?key=k1&token=other", clip, false)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("admitting hook: %v\n%s", err, testmedia.Stderr(cmd))
	}
	tags, _ := tagAll(t, waitEnd(t, s, "live/a", 5*time.Second))
	compareMedia(t, tags, testmedia.Tags(t, clip))

	hook.Hang()
	start := time.Now()
	refused(s.url + "/live/b?key=k1")
	if took := time.Since(start); took < timeout {
		t.Errorf("refused after %v, before auth_timeout %v", took, timeout)
	}
	cfg.AuthFailOpen = true
	if err := st.Reconfigure(&cfg); err != nil {
		t.Fatal(err)
	}
	cmd = push(t, s.url+"/live/b?key=k1", clip, false)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("auth_fail_open did not admit: %v\n%s", err, testmedia.Stderr(cmd))
	}
	waitEnd(t, s, "live/b", 5*time.Second)

	for result, want := range map[string]float64{"refuse": 1, "admit": 1, "error_refused": 1, "error_admitted": 1} {
		if got := core.CounterValue(env.Metrics.Counter("auth_" + result)); got != want {
			t.Errorf("auth_%s = %v, want %v", result, got, want)
		}
	}
	if strings.Contains(logs.String(), "TOKENVALUE") {
		t.Errorf("a query value was logged:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "auth refused") || !strings.Contains(logs.String(), "query_keys=key,token") {
		t.Errorf("the refusal is not logged with the query's keys:\n%s", logs.String())
	}
}
