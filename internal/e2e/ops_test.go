package e2e

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/internal/metricread"
	"github.com/mediapipe/mediapipe/internal/relaytoml"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// hookReceiver is a real HTTP server taking [[hook]] POSTs: it checks each
// body's signature and keeps the events in arrival order.
type hookReceiver struct {
	t      *testing.T
	secret string
	srv    *http.Server
	ln     net.Listener

	mu     sync.Mutex
	events []map[string]any
	bad    []string
}

// startReceiver serves on addr ("127.0.0.1:0" for any port).
func startReceiver(t *testing.T, addr, secret string) *hookReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("receiver: %v", err)
	}
	r := &hookReceiver{t: t, secret: secret, ln: ln}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	t.Cleanup(r.close)
	return r
}

func (r *hookReceiver) close() { _ = r.srv.Close() }

func (r *hookReceiver) url() string { return "http://" + r.ln.Addr().String() + "/events" }

func (r *hookReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	mac := hmac.New(sha256.New, []byte(r.secret))
	mac.Write(body)
	want := hex.EncodeToString(mac.Sum(nil))
	var ev map[string]any
	err := json.Unmarshal(body, &ev)
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case req.Method != http.MethodPost || req.URL.Path != "/events":
		r.bad = append(r.bad, req.Method+" "+req.URL.Path)
	case !hmac.Equal([]byte(req.Header.Get("X-Mediapipe-Signature")), []byte(want)):
		r.bad = append(r.bad, "bad signature on "+string(body))
	case err != nil:
		r.bad = append(r.bad, "not JSON: "+string(body))
	default:
		r.events = append(r.events, ev)
	}
}

// names lists the events received so far as "event stream", with the
// pipeline for stream_start/stream_end.
func (r *hookReceiver) names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, ev := range r.events {
		out = append(out, fmt.Sprint(ev["event"], " ", ev["stream"]))
	}
	return out
}

func (r *hookReceiver) has(name string) bool { return slices.Contains(r.names(), name) }

func (r *hookReceiver) find(name string) map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.events {
		if ev["event"] == name {
			return ev
		}
	}
	return nil
}

func (r *hookReceiver) check(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.bad {
		t.Errorf("receiver: %s", b)
	}
}

// opsTOML is one process: rtmp-source → flv-tagger → httpflv-sink, with
// extra (a [[hook]] table, or nothing) at the top.
func opsTOML(rtmp, http, extra string) string {
	return extra + relaytoml.Direct("cloud", rtmp, "httpflv-sink", http, "")
}

func hookTOML(url, secret string) string {
	return fmt.Sprintf(`
[[hook]]
url = %q
events = ["publish", "unpublish", "play", "stop", "stream_start", "stream_end"]
secret = %q
`, url, secret)
}

const apiToken = "api-t0ken-s3cret"

// api calls the admin API with the token (or without, when tok is "").
func api(t *testing.T, method, url, tok string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, body
}

// sumWithToken is Process.Sum for an admin server with a token.
func sumWithToken(t *testing.T, base, family string, labels map[string]string) float64 {
	t.Helper()
	code, _, body := api(t, http.MethodGet, base+"/metrics", apiToken)
	if code != http.StatusOK {
		t.Fatalf("/metrics with the token: %d", code)
	}
	fams, err := testrun.ParseMetrics(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return metricread.SumFamilies(fams, family, labels)
}

// TestHooksAndControlAPI: a real ffmpeg publishes to a real `mediapipe run`
// process with a signed [[hook]] and an API token; a viewer plays over
// HTTP-FLV. The API refuses calls without the token while /healthz answers,
// lists the stream with its publisher and viewer, kicks the viewer (its
// response ends) and then the publisher (ffmpeg's connection is closed, the
// stream ends); the receiver gets publish, stream_start, play, stop,
// unpublish, stream_end signed and in that order.
func TestHooksAndControlAPI(t *testing.T) {
	relayTest(t)
	const secret = "h00k-s3cret"
	recv := startReceiver(t, "127.0.0.1:0", secret)
	clip := testmedia.Clip(t, testmedia.Options{Seconds: 60})
	rtmpAddr, httpAddr := testrun.FreeTCP(t), testrun.FreeTCP(t)
	p := testrun.StartProcess(t, "ops.toml", opsTOML(rtmpAddr, httpAddr, hookTOML(recv.url(), secret)),
		[]string{"MEDIAPIPE_ADMIN_TOKEN=" + apiToken})
	base := "http://" + p.Admin

	// Without the token: 401 with a challenge; /healthz stays open, and so
	// does nothing else.
	for _, path := range []string{"/api/streams", "/api/pipelines", "/api/streams/live/ops", "/metrics"} {
		code, h, _ := api(t, http.MethodGet, base+path, "")
		if code != http.StatusUnauthorized || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("GET %s without the token: %d %q, want 401 with WWW-Authenticate: Bearer", path, code, h.Get("WWW-Authenticate"))
		}
	}
	if code, _, _ := api(t, http.MethodGet, base+"/api/streams", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("wrong token: %d, want 401", code)
	}
	if code, _, _ := api(t, http.MethodDelete, base+"/api/streams/live/ops", ""); code != http.StatusUnauthorized {
		t.Errorf("DELETE without the token: %d, want 401", code)
	}
	if code, _, _ := api(t, http.MethodGet, base+"/healthz", ""); code != http.StatusOK {
		t.Errorf("/healthz without the token: %d, want 200", code)
	}
	if code, _, _ := api(t, http.MethodGet, base+"/api/streams/live/ops", apiToken); code != http.StatusNotFound {
		t.Errorf("unknown stream: %d, want 404", code)
	}

	ctx, cancel := context.WithTimeout(context.Background(), testrun.FFmpegLimit)
	defer cancel()
	pub := testmedia.Push(t, ctx, clip, "rtmp://"+rtmpAddr+"/live/ops", true)
	pubDone := make(chan error, 1)
	go func() { pubDone <- pub.Wait() }()
	flvURL := "http://" + httpAddr + "/live/ops.flv"
	waitServed(t, flvURL)
	v := testrun.Watch(flvURL)
	testrun.Eventually(t, testrun.WaitLimit, "the viewer's play event", func() bool { return recv.has("play live/ops") })

	// The list: one stream with one viewer and bitrates.
	var list struct {
		Pipelines []struct {
			Name    string `json:"name"`
			Streams []struct {
				Name       string  `json:"name"`
				BitrateIn  float64 `json:"bitrate_in"`
				BitrateOut float64 `json:"bitrate_out"`
				Viewers    int     `json:"viewers"`
			} `json:"streams"`
		} `json:"pipelines"`
	}
	code, _, body := api(t, http.MethodGet, base+"/api/streams", apiToken)
	if err := json.Unmarshal(body, &list); code != 200 || err != nil || len(list.Pipelines) != 1 || len(list.Pipelines[0].Streams) != 1 {
		t.Fatalf("GET /api/streams: %d %v\n%s", code, err, body)
	}
	if st := list.Pipelines[0].Streams[0]; st.Name != "live/ops" || st.Viewers != 1 || st.BitrateIn <= 0 {
		t.Errorf("stream listed as %+v, want live/ops with 1 viewer and a bitrate in", st)
	}

	var detail struct {
		Name      string `json:"name"`
		Publisher *struct {
			ID, Address, Protocol string
			Bytes                 uint64
		} `json:"publisher"`
		Viewers []struct {
			ID, Address, Protocol string
			Bytes                 uint64
			Queue                 *int
		} `json:"viewers"`
	}
	code, _, body = api(t, http.MethodGet, base+"/api/streams/live/ops", apiToken)
	if err := json.Unmarshal(body, &detail); code != 200 || err != nil {
		t.Fatalf("GET /api/streams/live/ops: %d %v\n%s", code, err, body)
	}
	if detail.Publisher == nil || detail.Publisher.Protocol != "rtmp" || !strings.HasPrefix(detail.Publisher.Address, "127.0.0.1:") || detail.Publisher.Bytes == 0 {
		t.Fatalf("publisher: %s", body)
	}
	if len(detail.Viewers) != 1 || detail.Viewers[0].Protocol != "http-flv" || detail.Viewers[0].Queue == nil || detail.Viewers[0].ID == "" {
		t.Fatalf("viewers: %s", body)
	}
	if got := recv.find("play"); got == nil || got["id"] != detail.Viewers[0].ID || got["client"] != detail.Viewers[0].Address || got["protocol"] != "http-flv" {
		t.Errorf("play event %v does not name the viewer the API lists (%s)", got, body)
	}

	code, _, body = api(t, http.MethodGet, base+"/api/pipelines", apiToken)
	if code != 200 || !strings.Contains(string(body), `"name": "httpflv-sink"`) || !strings.Contains(string(body), `"state": "running"`) {
		t.Errorf("GET /api/pipelines: %d\n%s", code, body)
	}

	// Kick the viewer: its response ends, the rest goes on.
	if code, _, _ := api(t, http.MethodDelete, base+"/api/viewers/nosuchid", apiToken); code != http.StatusNotFound {
		t.Errorf("DELETE of an unknown viewer: %d, want 404", code)
	}
	if code, _, body := api(t, http.MethodDelete, base+"/api/viewers/"+detail.Viewers[0].ID, apiToken); code != http.StatusNoContent {
		t.Fatalf("DELETE viewer: %d %s", code, body)
	}
	testrun.Within(t, v.Done(), 5*time.Second, "the kicked viewer's response to end")
	testrun.Eventually(t, 5*time.Second, "the stop event", func() bool { return recv.has("stop live/ops") })
	select {
	case err := <-pubDone:
		t.Fatalf("the publisher ended with the viewer: %v", err)
	default:
	}

	// Kick the publisher: ffmpeg's connection is closed, the stream ends.
	if code, _, body := api(t, http.MethodDelete, base+"/api/streams/live/ops", apiToken); code != http.StatusNoContent {
		t.Fatalf("DELETE stream: %d %s", code, body)
	}
	if err := testrun.Within(t, pubDone, 10*time.Second, "ffmpeg to see its connection closed"); err == nil {
		t.Errorf("ffmpeg exited 0 after its connection was closed under it")
	}
	testrun.Eventually(t, 5*time.Second, "stream_end", func() bool { return recv.has("stream_end live/ops") })
	if n := sumWithToken(t, base, "mediapipe_stage_drops_total", map[string]string{"reason": "connection_error"}); n != 0 {
		t.Errorf("a kicked publisher counted as %v connection errors", n)
	}
	if n := sumWithToken(t, base, "mediapipe_stage_viewers_kicked_total", nil); n != 1 {
		t.Errorf("viewers_kicked %v, want 1", n)
	}
	if code, _, _ := api(t, http.MethodDelete, base+"/api/streams/live/ops", apiToken); code != http.StatusNotFound {
		t.Errorf("DELETE of a stream without a publisher: %d, want 404", code)
	}

	want := []string{"publish live/ops", "stream_start live/ops", "play live/ops", "stop live/ops", "unpublish live/ops", "stream_end live/ops"}
	if got := recv.names(); !slices.Equal(got, want) {
		t.Errorf("events\n got %q\nwant %q", got, want)
	}
	recv.check(t)
	if ev := recv.find("stream_start"); ev == nil || ev["pipeline"] != "cloud" || ev["time"] == nil {
		t.Errorf("stream_start: %v", ev)
	}
	if strings.Contains(p.Log(), secret) || strings.Contains(p.Log(), apiToken) {
		t.Errorf("a secret is in the log:\n%s", p.Log())
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
}

// TestHookSurvivesReceiverRestart: the receiver is down when the events
// happen and comes back on the same address a little later; the retries
// deliver every event, in order.
func TestHookSurvivesReceiverRestart(t *testing.T) {
	relayTest(t)
	const secret = "r3start"
	addr := testrun.FreeTCP(t) // nothing listens here yet: connections are refused
	clip := testmedia.Clip(t, testmedia.Options{Seconds: 3})
	rtmpAddr, httpAddr := testrun.FreeTCP(t), testrun.FreeTCP(t)
	p := testrun.StartProcess(t, "restart.toml", opsTOML(rtmpAddr, httpAddr, hookTOML("http://"+addr+"/events", secret)), nil)

	ctx, cancel := context.WithTimeout(context.Background(), testrun.FFmpegLimit)
	defer cancel()
	pub := testmedia.Push(t, ctx, clip, "rtmp://"+rtmpAddr+"/live/rs", true)
	waitServed(t, "http://"+httpAddr+"/live/rs.flv")
	// publish and stream_start have been sent to nobody by now; the
	// receiver comes up while they are being retried.
	time.Sleep(700 * time.Millisecond) // the outage itself, not a synchronisation
	recv := startReceiver(t, addr, secret)
	if err := pub.Wait(); err != nil {
		t.Fatalf("publisher: %v\n%s", err, testmedia.Stderr(pub))
	}
	want := []string{"publish live/rs", "stream_start live/rs", "unpublish live/rs", "stream_end live/rs"}
	testrun.Eventually(t, 20*time.Second, "every event through the restart", func() bool { return len(recv.names()) >= len(want) })
	if got := recv.names(); !slices.Equal(got, want) {
		t.Errorf("events\n got %q\nwant %q", got, want)
	}
	recv.check(t)
	// The sender counts an event once its answer is back, a moment after
	// the receiver has it.
	delivered := func() float64 {
		return p.Sum(t, "mediapipe_hook_events_total", map[string]string{"hook": "1", "result": "delivered"})
	}
	testrun.Eventually(t, 5*time.Second, "4 events counted delivered", func() bool { return delivered() == 4 })
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
}

// TestDeadHookDoesNotDelayMedia measures, in one process without a hook
// and one whose hook receiver accepts connections and never answers, how
// long viewers take from their request to their first tag (every join
// publishes a play event) and how late tags reach a viewer against the
// publisher's real-time pace. The dead receiver must change neither: a
// sender that waited on it would add its 5 s timeout.
func TestDeadHookDoesNotDelayMedia(t *testing.T) {
	relayTest(t)
	dead, err := net.Listen("tcp", "127.0.0.1:0") // accepts (backlog) and never answers
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dead.Close() })
	clip := testmedia.Clip(t, testmedia.Options{Seconds: 30})
	for _, mode := range []struct{ name, hook string }{
		{"no hook", ""},
		{"dead hook", hookTOML("http://"+dead.Addr().String()+"/events", "x")},
	} {
		join, late := measureJoins(t, clip, mode.hook)
		t.Logf("%s: viewer join (request to first tag) median %v max %v; tag lateness median %v max %v",
			mode.name, median(join), slices.Max(join), median(late), slices.Max(late))
		if m := median(join); m > time.Second {
			t.Errorf("%s: viewers take %v to get their first tag", mode.name, m)
		}
		if m := slices.Max(late); m > 2*time.Second {
			t.Errorf("%s: a tag arrived %v late", mode.name, m)
		}
	}
}

// measureJoins publishes clip to a fresh process and joins 5 viewers one
// after another, each reading 200 tags: it returns their join times and,
// over every tag after the first second of a viewer, how much later than
// its timestamp says it arrived (against the viewer's earliest tag).
func measureJoins(t *testing.T, clip, hook string) (join, late []time.Duration) {
	t.Helper()
	rtmpAddr, httpAddr := testrun.FreeTCP(t), testrun.FreeTCP(t)
	p := testrun.StartProcess(t, "lat.toml", opsTOML(rtmpAddr, httpAddr, hook), nil)
	ctx, cancel := context.WithTimeout(context.Background(), testrun.FFmpegLimit)
	defer cancel()
	pub := testmedia.Push(t, ctx, clip, "rtmp://"+rtmpAddr+"/live/lat", true)
	url := "http://" + httpAddr + "/live/lat.flv"
	waitServed(t, url)
	c := &http.Client{Timeout: 10 * time.Second}
	for range 5 {
		start := time.Now()
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("viewer: %v", err)
		}
		r := flv.NewReader(resp.Body)
		var base time.Time
		var baseTS uint32
		for i := range 200 {
			tag, err := r.Next()
			if err != nil {
				t.Fatalf("viewer tag %d: %v", i, err)
			}
			now := time.Now()
			if i == 0 {
				join = append(join, now.Sub(start))
			}
			h, _ := flv.ParseHeader(tag)
			if h.Type != flv.TypeVideo {
				continue
			}
			// The GOP cache arrives at once: measure from the live part,
			// a second in.
			if base.IsZero() && now.Sub(start) > time.Second {
				base, baseTS = now, h.Timestamp
				continue
			}
			if !base.IsZero() {
				expect := base.Add(time.Duration(h.Timestamp-baseTS) * time.Millisecond)
				late = append(late, max(0, now.Sub(expect)))
			}
		}
		resp.Body.Close()
	}
	cancel()
	_ = pub.Wait()
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	return join, late
}

// waitServed waits until the sink serves url, asking with HEAD so as not
// to become a viewer (which would send play and stop events).
func waitServed(t *testing.T, url string) {
	t.Helper()
	testrun.Eventually(t, testrun.WaitLimit, "the stream on the sink", func() bool { return testrun.Head(url) == http.StatusOK })
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// TestHLSViewerKick: an HLS client fetching a stream's playlist is listed
// by the API as one hls viewer (its IP), announced by play; kicked, it
// gets stop and its next requests for the stream are refused (403).
func TestHLSViewerKick(t *testing.T) {
	relayTest(t)
	const secret = "hls-s3cret"
	recv := startReceiver(t, "127.0.0.1:0", secret)
	clip := testmedia.Clip(t, testmedia.Options{Seconds: 30})
	rtmpAddr, webAddr := testrun.FreeTCP(t), testrun.FreeTCP(t)
	p := testrun.StartProcess(t, "hls.toml", hookTOML(recv.url(), secret)+
		relaytoml.Direct("hls", rtmpAddr, "hls-sink", webAddr, `  variant = "mpegts"`+"\n"), nil)
	base := "http://" + p.Admin
	ctx, cancel := context.WithTimeout(context.Background(), testrun.FFmpegLimit)
	defer cancel()
	testmedia.Push(t, ctx, clip, "rtmp://"+rtmpAddr+"/live/h", true)
	playlist := "http://" + webAddr + "/live/h/index.m3u8"
	get := func() int {
		resp, err := http.Get(playlist)
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	testrun.Eventually(t, testrun.WaitLimit, "the playlist", func() bool { return get() == http.StatusOK })
	testrun.Eventually(t, 5*time.Second, "the play event", func() bool { return recv.has("play live/h") })

	var detail struct {
		Viewers []struct{ ID, Address, Protocol string } `json:"viewers"`
	}
	code, _, body := api(t, http.MethodGet, base+"/api/streams/live/h", "")
	if err := json.Unmarshal(body, &detail); code != 200 || err != nil || len(detail.Viewers) != 1 {
		t.Fatalf("GET /api/streams/live/h: %d %v\n%s", code, err, body)
	}
	if v := detail.Viewers[0]; v.Protocol != "hls" || v.Address != "127.0.0.1" {
		t.Fatalf("viewer %+v, want an hls viewer at 127.0.0.1", v)
	}
	if get() != http.StatusOK {
		t.Fatal("a second request is refused before the kick")
	}
	if code, _, body := api(t, http.MethodDelete, base+"/api/viewers/"+detail.Viewers[0].ID, ""); code != http.StatusNoContent {
		t.Fatalf("DELETE viewer: %d %s", code, body)
	}
	if code := get(); code != http.StatusForbidden {
		t.Errorf("the kicked client's next request: %d, want 403", code)
	}
	testrun.Eventually(t, 5*time.Second, "the stop event", func() bool { return recv.has("stop live/h") })
	if got := recv.names(); !slices.Equal(got[:3], []string{"publish live/h", "stream_start live/h", "play live/h"}) || got[3] != "stop live/h" {
		t.Errorf("events %q", got)
	}
	recv.check(t)
	cancel()
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
}
