package authhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/internal/testrun"
	"github.com/mediapipe/mediapipe/stages/internal/authhook"
)

// receiver is a hook on loopback: it answers status (after delay) and
// records the bodies it got.
type receiver struct {
	*httptest.Server
	calls  atomic.Int32
	mu     sync.Mutex
	bodies []authhook.Request
}

func newReceiver(t *testing.T, answer func(r *http.Request) int) *receiver {
	t.Helper()
	rc := &receiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc.calls.Add(1)
		var req authhook.Request
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			t.Errorf("hook body: %v", err)
		}
		rc.mu.Lock()
		rc.bodies = append(rc.bodies, req)
		rc.mu.Unlock()
		w.WriteHeader(answer(r))
	}))
	t.Cleanup(rc.Close)
	return rc
}

func status(code int) func(*http.Request) int { return func(*http.Request) int { return code } }

func newHook(t *testing.T, cfg authhook.Config) (*authhook.Hook, *core.Env, *bytes.Buffer) {
	t.Helper()
	env := core.TestEnv("httpflv-sink")
	var log syncBuffer
	env.Log = slog.New(slog.NewTextHandler(&log, nil))
	h := authhook.New(env, authhook.HTTPFLV, cfg)
	t.Cleanup(h.Close)
	return h, env, &log.b
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func counter(env *core.Env, name string) float64 {
	return core.CounterValue(env.Metrics.Counter(name))
}

func TestAnswers(t *testing.T) {
	for _, tc := range []struct {
		hook   int
		admit  bool
		status int
		result string
	}{
		{200, true, 200, authhook.ResultAdmit},
		{204, true, 200, authhook.ResultAdmit},
		{401, false, 401, authhook.ResultRefuse},
		{403, false, 403, authhook.ResultRefuse},
		{404, false, 403, authhook.ResultRefuse},
		{500, false, 403, authhook.ResultRefuse},
		{302, false, 403, authhook.ResultRefuse}, // a redirect elsewhere is not followed
	} {
		rc := newReceiver(t, func(r *http.Request) int { return tc.hook })
		if tc.hook == 302 {
			rc.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rc.calls.Add(1)
				// another host (an address nothing listens on)
				http.Redirect(w, r, "http://127.0.0.2:9/elsewhere", http.StatusFound)
			})
		}
		h, env, _ := newHook(t, authhook.Config{URL: rc.URL + "/auth", Timeout: 2 * time.Second})
		d, ok := h.Check(context.Background(), authhook.Play, "live/a", map[string]string{"token": "t1"}, "127.0.0.1:5000")
		if !ok || d.Admit != tc.admit || d.Status != tc.status || d.Result != tc.result {
			t.Errorf("hook %d: got %+v, want admit %v status %d result %s", tc.hook, d, tc.admit, tc.status, tc.result)
		}
		if got := counter(env, "auth_"+tc.result); got != 1 {
			t.Errorf("hook %d: auth_%s = %v", tc.hook, tc.result, got)
		}
		if n := rc.calls.Load(); n != 1 {
			t.Errorf("hook %d: %d calls", tc.hook, n)
		}
		h.Close()
	}
}

func TestRequestBody(t *testing.T) {
	rc := newReceiver(t, status(200))
	h, _, _ := newHook(t, authhook.Config{URL: rc.URL, Timeout: time.Second})
	q := map[string]string{"token": "abc", "user": "u1"}
	h.Check(context.Background(), authhook.Play, "live/cam", q, "127.0.0.1:4242")
	rc.mu.Lock()
	defer rc.mu.Unlock()
	want := authhook.Request{Action: "play", Protocol: "http-flv", Stream: "live/cam", Query: q,
		Client: "127.0.0.1:4242", Pipeline: "test", Stage: "httpflv-sink"}
	if len(rc.bodies) != 1 || !equalReq(rc.bodies[0], want) {
		t.Fatalf("bodies %+v, want %+v", rc.bodies, want)
	}
}

func equalReq(a, b authhook.Request) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

// A hook that hangs is given auth_timeout: refused, or admitted with
// auth_fail_open; the failure is counted and logged without the query.
func TestHangingHook(t *testing.T) {
	release := make(chan struct{})
	rc := newReceiver(t, func(r *http.Request) int {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return 200
	})
	defer close(release)
	for _, open := range []bool{false, true} {
		const timeout = 300 * time.Millisecond
		h, env, log := newHook(t, authhook.Config{URL: rc.URL, Timeout: timeout, FailOpen: open})
		start := time.Now()
		d, _ := h.Check(context.Background(), authhook.Play, "live/a", map[string]string{"token": "SECRETVALUE"}, "127.0.0.1:1")
		took := time.Since(start)
		t.Logf("fail_open %v: %s after %v (auth_timeout %v)", open, d.Result, took, timeout)
		if took < timeout || took > timeout+time.Second {
			t.Errorf("fail_open %v: answered after %v, auth_timeout %v", open, took, timeout)
		}
		want := authhook.ResultErrorRefused
		if open {
			want = authhook.ResultErrorAdmitted
		}
		if d.Admit != open || d.Result != want {
			t.Errorf("fail_open %v: %+v", open, d)
		}
		if counter(env, "auth_"+want) != 1 {
			t.Errorf("auth_%s not counted", want)
		}
		if strings.Contains(log.String(), "SECRETVALUE") || !strings.Contains(log.String(), "auth hook failed") {
			t.Errorf("log:\n%s", log.String())
		}
		h.Close()
	}
}

// A thousand viewers asking at once make one call; the answer is kept, so
// the next ones make none; another query is another question.
func TestCrowdOneCall(t *testing.T) {
	gate := make(chan struct{})
	rc := newReceiver(t, func(*http.Request) int { <-gate; return 200 })
	h, env, _ := newHook(t, authhook.Config{URL: rc.URL, Timeout: 5 * time.Second})
	const viewers = 1000
	var wg sync.WaitGroup
	var admitted atomic.Int32
	for i := range viewers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, ok := h.Check(context.Background(), authhook.Play, "live/a", map[string]string{"k": "v"}, "127.0.0.1:"+strconv.Itoa(i))
			if ok && d.Admit {
				admitted.Add(1)
			}
		}()
	}
	testrun.Eventually(t, testrun.WaitLimit, "the call in flight", func() bool { return rc.calls.Load() >= 1 })
	close(gate)
	wg.Wait()
	if n := rc.calls.Load(); n > 1 {
		t.Errorf("%d calls for %d viewers with one question", n, viewers)
	}
	if n := admitted.Load(); n != viewers {
		t.Errorf("%d of %d admitted", n, viewers)
	}
	if got := counter(env, "auth_cached"); got != viewers-1 {
		t.Errorf("auth_cached = %v, want %d", got, viewers-1)
	}
	h.Check(context.Background(), authhook.Play, "live/a", map[string]string{"k": "other"}, "127.0.0.1:1")
	if n := rc.calls.Load(); n != 2 {
		t.Errorf("another query made %d calls in all, want 2", n)
	}
}

// Refusals are logged at info with the stream, client and the query's
// keys, never its values.
func TestRefusalLog(t *testing.T) {
	rc := newReceiver(t, status(403))
	h, _, log := newHook(t, authhook.Config{URL: rc.URL, Timeout: time.Second})
	d, _ := h.Check(context.Background(), authhook.Play, "live/a", map[string]string{"token": "SECRETVALUE"}, "127.0.0.1:77")
	if d.Admit || d.Status != 403 {
		t.Fatalf("%+v", d)
	}
	out := log.String()
	for _, want := range []string{"level=INFO", "auth refused", "stream=live/a", "client=127.0.0.1:77", "query_keys=token"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "SECRETVALUE") {
		t.Errorf("the query's value was logged:\n%s", out)
	}
}

func TestReconfigure(t *testing.T) {
	refuse := newReceiver(t, status(403))
	admit := newReceiver(t, status(200))
	h, _, _ := newHook(t, authhook.Config{URL: refuse.URL, Timeout: time.Second})
	q := map[string]string{}
	if d, _ := h.Check(context.Background(), authhook.Play, "live/a", q, "127.0.0.1:1"); d.Admit {
		t.Fatal("refusing hook admitted")
	}
	h.Reconfigure(authhook.Config{URL: admit.URL, Timeout: time.Second})
	if d, _ := h.Check(context.Background(), authhook.Play, "live/a", q, "127.0.0.1:1"); !d.Admit {
		t.Fatal("a reload's new hook was not asked (the old refusal was kept)")
	}
	h.Reconfigure(authhook.Config{})
	if h.Enabled() {
		t.Fatal("enabled without auth_url")
	}
	if d, _ := h.Check(context.Background(), authhook.Play, "live/a", q, "127.0.0.1:1"); !d.Admit {
		t.Fatal("no hook refused")
	}
}

func TestValidateURL(t *testing.T) {
	for u, ok := range map[string]bool{
		"":                              true,
		"http://127.0.0.1:8080/auth":    true,
		"https://auth.example/check?t=": true,
		"ftp://127.0.0.1/":              false,
		"127.0.0.1:8080":                false,
		"http:///nohost":                false,
		"http://[::1":                   false,
	} {
		err := authhook.ValidateURL(u)
		if (err == nil) != ok {
			t.Errorf("%q: %v", u, err)
		}
	}
	if err := authhook.ValidateURL("ftp://u:pw@h/p?token=SECRET"); err == nil || strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "pw") {
		t.Errorf("error quotes a secret: %v", err)
	}
}

// BenchmarkCheckCached is the cost of a decision taken from a kept answer:
// what each HLS request and each viewer after the first pays.
func BenchmarkCheckCached(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	defer srv.Close()
	env := core.TestEnv("hls-sink")
	h := authhook.New(env, authhook.HLS, authhook.Config{URL: srv.URL, Timeout: time.Second})
	defer h.Close()
	q := map[string]string{"key": "pk", "token": "abcdef0123456789"}
	ctx := context.Background()
	h.Check(ctx, authhook.Play, "live/a", q, "127.0.0.1:1")
	b.ReportAllocs()
	for b.Loop() {
		if d, _ := h.Check(ctx, authhook.Play, "live/a", q, "127.0.0.1:1"); !d.Admit {
			b.Fatal("refused")
		}
	}
}

// BenchmarkCheckCall is a decision that needs a call (a new question each
// time): what the first viewer of a stream and query waits, on loopback.
func BenchmarkCheckCall(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	defer srv.Close()
	env := core.TestEnv("hls-sink")
	h := authhook.New(env, authhook.HLS, authhook.Config{URL: srv.URL, Timeout: time.Second})
	defer h.Close()
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if d, _ := h.Check(ctx, authhook.Play, "live/a", map[string]string{"n": strconv.Itoa(i)}, "127.0.0.1:1"); !d.Admit {
			b.Fatal("refused")
		}
	}
}
