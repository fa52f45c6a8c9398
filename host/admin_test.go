package host_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/host"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// With a token, /api needs it and /metrics too unless metrics_public;
// /healthz never does.
func TestAdminToken(t *testing.T) {
	for _, public := range []bool{false, true} {
		file := strings.Replace(goodFile, `listen = "127.0.0.1:0"`, `listen = "127.0.0.1:0"
token = "t0k"
metrics_public = `+map[bool]string{false: "false", true: "true"}[public], 1)
		rt := loadAndBuild(t, file, testRegistry(t), host.Options{})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- rt.Run(ctx) }()
		<-rt.Ready()
		base := "http://" + rt.AdminAddr.String()
		get := func(path, auth string) int {
			req, _ := http.NewRequest(http.MethodGet, base+path, nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		metricsOpen := http.StatusUnauthorized
		if public {
			metricsOpen = http.StatusOK
		}
		for _, c := range []struct {
			path, auth string
			want       int
		}{
			{"/healthz", "", 200},
			{"/api/streams", "", 401},
			{"/api/streams", "Bearer nope", 401},
			{"/api/streams", "t0k", 401},
			{"/api/streams", "Bearer t0k", 200},
			{"/api/pipelines", "Bearer t0k", 200},
			{"/api/streams/live/none", "Bearer t0k", 404},
			{"/api/nothing", "", 401},
			{"/api/nothing", "Bearer t0k", 404},
			{"/metrics", "", metricsOpen},
			{"/metrics", "Bearer t0k", 200},
		} {
			if got := get(c.path, c.auth); got != c.want {
				t.Errorf("metrics_public=%v: GET %s (%q): %d, want %d", public, c.path, c.auth, got, c.want)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// A reload that adds a [[hook]] starts sending to it; one that removes it
// stops: the hooks follow the file.
func TestReloadAppliesHooks(t *testing.T) {
	var got atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got.Add(1) }))
	defer srv.Close()
	base := pipe("a", "live/a", "k1", "live")
	r := newReloadRig(t, base)
	send := func() { r.rt.Events.Publish(core.Notice{Name: core.NoticePublish, Stream: "live/x"}) }
	send()
	r.set(fmt.Sprintf("[[hook]]\nurl = %q\nevents = [\"publish\"]\n", srv.URL) + base)
	if _, err := r.rt.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	send()
	delivered := func() float64 {
		return r.rt.CounterSum("mediapipe_hook_events_total", map[string]string{"result": "delivered"})
	}
	testrun.Eventually(t, 5*time.Second, "the added hook's event", func() bool { return delivered() == 1 })
	r.set(base)
	if _, err := r.rt.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	send()
	if n := delivered(); n != 1 {
		t.Errorf("delivered %v, want 1 (only the event while the hook was in the file)", n)
	}
	if got.Load() != 1 {
		t.Errorf("receiver got %d events, want 1", got.Load())
	}
}

// A reload that changes the token on the same address applies it at once
// on the running server (the address stays bound: a new server there
// could not listen), so a leaked token is rotated without a restart.
func TestReloadRotatesAdminToken(t *testing.T) {
	addr := testrun.FreeTCP(t)
	admin := func(token string) string {
		return fmt.Sprintf("[admin]\nlisten = %q\ntoken = %q\n", addr, token)
	}
	base := pipe("a", "live/a", "k1", "live")
	r := newReloadRig(t, admin("old")+base)
	status := func(token string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/api/streams", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if status("old") != 200 || status("new") != 401 {
		t.Fatalf("before the reload: old %d, new %d", status("old"), status("new"))
	}
	r.set(admin("new") + base)
	res, err := r.rt.Reload(context.Background())
	if err != nil || len(res.Errors) > 0 {
		t.Fatalf("reload: %v %v", err, res)
	}
	if status("old") != 401 || status("new") != 200 {
		t.Errorf("after the reload: old token %d (want 401), new %d (want 200)", status("old"), status("new"))
	}
}
