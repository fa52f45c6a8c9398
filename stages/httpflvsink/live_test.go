package httpflvsink_test

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// get is a GET's status; the body is left unread.
func get(t *testing.T, url string) int {
	t.Helper()
	resp, err := httpc.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// A reload that rotates play_key and lowers, then raises, max_viewers while
// two viewers play: new viewers need the new key (401/403 as ever) and are
// held to the new limit (503), the two playing get every tag of the stream
// in one response, and raising the limit admits more at once. Invalid
// values and a non-live change are refused and change nothing.
func TestReconfigureKeyAndViewers(t *testing.T) {
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{Seconds: 2}))
	def, ok := core.Default.Lookup("httpflv-sink")
	if !ok {
		t.Fatal("httpflv-sink is not registered")
	}
	logs := &testrun.LogBuffer{}
	env := core.TestEnv("httpflv-sink")
	env.Log = slog.New(slog.NewTextHandler(logs, nil))
	raw := func(key string, maxViewers any) map[string]any {
		return map[string]any{"listen": "127.0.0.1:0", "play_key": key, "max_viewers": maxViewers}
	}
	st, err := def.Build(raw("first-key", int64(2)), env)
	if err != nil {
		t.Fatal(err)
	}
	h := stagetest.Start(t, st, env, false)
	base := "http://" + st.(interface{ Addr() net.Addr }).Addr().String() + "/live/a.flv"
	viewers := func() float64 { return core.GaugeValue(env.Metrics.Gauge("viewers")) }
	stream := h.StartStream("live/a")
	testrun.Eventually(t, testrun.WaitLimit, "the stream served", func() bool { return testrun.Head(base+"?key=first-key") == 200 })

	a, b := testrun.Watch(base+"?key=first-key"), testrun.Watch(base+"?key=first-key")
	testrun.Eventually(t, testrun.WaitLimit, "two viewers", func() bool { return viewers() == 2 })
	if code := get(t, base+"?key=first-key"); code != http.StatusServiceUnavailable {
		t.Fatalf("a third viewer with max_viewers 2: %d, want 503", code)
	}
	half := len(tags) / 2
	for _, tag := range tags[:half] {
		hdr, _ := flv.ParseHeader(tag)
		h.SendData(stream, hdr.Type, hdr.Timestamp, tag)
	}
	testrun.Eventually(t, testrun.WaitLimit, "both viewers playing", func() bool { return a.Count() > 0 && b.Count() > 0 })

	if err := def.Reconfigure(st, raw("second-key", int64(1))); err != nil {
		t.Fatalf("reconfigure: %v", err)
	}
	for _, c := range []struct {
		query string
		want  int
	}{{"", 401}, {"?key=first-key", 403}, {"?key=second-key", 503}} {
		if code := get(t, base+c.query); code != c.want {
			t.Errorf("after the rotation, GET %q: %d, want %d", c.query, code, c.want)
		}
	}
	if v := viewers(); v != 2 {
		t.Fatalf("lowering max_viewers to 1 left %v viewers, want the 2 connected", v)
	}

	if err := def.Reconfigure(st, raw("second-key", int64(3))); err != nil {
		t.Fatalf("reconfigure: %v", err)
	}
	c := testrun.Watch(base + "?key=second-key")
	testrun.Eventually(t, testrun.WaitLimit, "a third viewer once max_viewers is 3", func() bool { return viewers() == 3 })

	for _, bad := range []map[string]any{raw("x", int64(-1)), raw("x", "many"), raw("x", 1.5)} {
		if err := def.Reconfigure(st, bad); err == nil {
			t.Fatalf("reconfigure with max_viewers %v accepted", bad["max_viewers"])
		}
	}
	nonLive := raw("x", int64(0))
	nonLive["viewer_queue"] = int64(64)
	if err := def.Reconfigure(st, nonLive); !errors.Is(err, core.ErrNotLive) {
		t.Fatalf("a change to viewer_queue: %v, want ErrNotLive", err)
	}
	// Still second-key and 3 viewers at most.
	if code := get(t, base+"?key=x"); code != 403 {
		t.Fatalf("after refused reconfigures, GET with their key: %d, want 403", code)
	}
	if code := get(t, base+"?key=second-key"); code != 503 {
		t.Fatalf("a fourth viewer after refused reconfigures: %d, want 503", code)
	}

	for _, tag := range tags[half:] {
		hdr, _ := flv.ParseHeader(tag)
		h.SendData(stream, hdr.Type, hdr.Timestamp, tag)
	}
	h.EndStream(stream)
	for i, v := range []*testrun.Viewer{a, b} {
		got := v.Wait(t, testrun.WaitLimit)
		if len(got) != len(tags) {
			t.Fatalf("viewer %d: %d tags, want all %d", i, len(got), len(tags))
		}
		sameTags(t, got, tags)
	}
	if got := c.Wait(t, testrun.WaitLimit); len(got) == 0 {
		t.Fatal("the viewer admitted after raising max_viewers got nothing")
	}
	if n := env.Metrics.Drop("viewer_rejected").Value(); n != 3 {
		t.Errorf("viewer_rejected = %v, want 3 (the 503s)", n)
	}
	if strings.Contains(logs.String(), "second-key") {
		t.Error("the play key was logged")
	}
}
