package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// TestAuthHooks runs a cloud and an edge in one `mediapipe run` process,
// rtmp-source and httpflv-sink both asking one hook (a real HTTP server on
// loopback) that admits one publish token and one play token: ffmpeg with a
// wrong token is refused (exits non-zero), the right one publishes; a viewer
// with a wrong token gets 403, the right one plays. A reload then points the
// edge's auth_url at a dead address with auth_fail_open: the wrong viewer is
// admitted, applied in place (the first viewer's one response carries the
// clip on, no gap). No token reaches the log.
func TestAuthHooks(t *testing.T) {
	relayTest(t)
	const pubToken, viewToken, wrong = "PUBTOKEN1", "VIEWTOKEN2", "WRONGTOKEN3"
	clip := testmedia.Clip(t, clipOpts)
	clipTags := mediaTags(testmedia.Tags(t, clip))
	var calls atomic.Int64
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		var req struct {
			Action, Protocol, Stream string
			Query                    map[string]string
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		ok := req.Stream == "live/auth" && (req.Action == "publish" && req.Protocol == "rtmp" && req.Query["token"] == pubToken ||
			req.Action == "play" && req.Protocol == "http-flv" && req.Query["token"] == viewToken)
		if ok {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.WriteHeader(http.StatusForbidden)
	}))
	defer hook.Close()

	a := newAddrs(t)
	file := func(edgeHook string, failOpen bool) string {
		edge := withParam(edgeTOML("edge", a, "", ""), "httpflv-sink", "auth_url", edgeHook)
		if failOpen {
			edge = strings.Replace(edge, `use = "httpflv-sink"`, `use = "httpflv-sink"`+"\n  auth_fail_open = true", 1)
		}
		return withParam(cloudTOML(a), "rtmp-source", "auth_url", hook.URL+"/publish") + edge
	}
	relay := testrun.StartProcess(t, "auth.toml", file(hook.URL+"/play", false), nil)

	refused := testmedia.Push(t, context.Background(), clip, "rtmp://"+a.RTMP+"/live/auth?token="+wrong, false)
	if err := refused.Wait(); err == nil {
		t.Fatal("a publisher with a wrong token was admitted")
	}
	push := testmedia.Push(t, context.Background(), clip, "rtmp://"+a.RTMP+"/live/auth?token="+pubToken, true)
	base := "http://" + a.HTTP + "/live/auth.flv?token="
	testrun.WaitPlayable(t, base+viewToken, 5*time.Second)
	v := testrun.Watch(base + viewToken)
	testrun.Eventually(t, 5*time.Second, "the viewer to play", func() bool { return v.Count() > 30 })
	if code := status(t, base+wrong); code != http.StatusForbidden {
		t.Fatalf("a viewer with a wrong token got %d, want 403", code)
	}

	// Nothing listens at dead: every call fails, and auth_fail_open admits.
	dead := "http://" + testrun.FreeTCP(t) + "/play"
	rewrite(t, relay, file(dead, true))
	hup(t, relay, "ok")
	if code := status(t, base+wrong); code != http.StatusOK {
		t.Fatalf("after the reload to auth_fail_open with a dead hook, a viewer got %d, want 200", code)
	}

	if err := push.Wait(); err != nil {
		t.Fatalf("push: %v\n%s", err, testmedia.Stderr(push))
	}
	tags := mediaTags(v.Wait(t, 10*time.Second))
	assertRun(t, "viewer (through the reload)", tags, clipTags, len(clipTags)*2/3)
	events := func(event string) float64 {
		return relay.Sum(t, "mediapipe_stage_auth_decisions_total", map[string]string{"result": strings.TrimPrefix(event, "auth_")})
	}
	if events("auth_refuse") < 2 || events("auth_admit") < 2 || events("auth_error_admitted") < 1 {
		t.Errorf("auth counters: refuse %v, admit %v, error_admitted %v", events("auth_refuse"), events("auth_admit"), events("auth_error_admitted"))
	}
	for _, secret := range []string{pubToken, viewToken, wrong} {
		if strings.Contains(relay.Log(), secret) {
			t.Errorf("token %q appears in the log", secret)
		}
	}
	t.Logf("%d hook calls; viewer got %d of the clip's %d media tags in one response", calls.Load(), len(tags), len(clipTags))
}

func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
