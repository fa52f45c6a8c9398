package playerpage

import (
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/stages/internal/streaminfo"
)

func get(t *testing.T, h http.Handler, url string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, url, nil))
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func handler(key string, streams ...streaminfo.Info) *Handler {
	return New(Options{
		Protocol: FLV,
		Streams:  func() []streaminfo.Info { return append([]streaminfo.Info(nil), streams...) },
		PlayKey:  func() string { return key },
	})
}

func TestStreamsJSON(t *testing.T) {
	h := handler("", streaminfo.Info{Name: "live/b", Viewers: 2}, streaminfo.Info{Name: "live/a", Video: "H264 High 4.0", Width: 640, Height: 360})
	res, body := get(t, h, "/.mediapipe/streams.json")
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/json" || res.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("status %d, headers %v", res.StatusCode, res.Header)
	}
	var list streamList
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatal(err)
	}
	if list.Protocol != FLV || len(list.Streams) != 2 || list.Streams[0].Name != "live/a" || list.Streams[0].Width != 640 || list.Streams[1].Viewers != 2 {
		t.Fatalf("list %+v", list)
	}

	_, body = get(t, handler(""), "/.mediapipe/streams.json")
	if !strings.Contains(body, `"streams":[]`) {
		t.Fatalf("empty list is %s, want an empty array", body)
	}
}

func TestPlayKey(t *testing.T) {
	h := handler("s3cret", streaminfo.Info{Name: "live/a"})
	for _, c := range []struct {
		url  string
		want int
	}{
		{"/.mediapipe/streams.json", 401},
		{"/.mediapipe/streams.json?key=nope", 403},
		{"/.mediapipe/streams.json?key=s3cret", 200},
		{"/", 401},
		{"/?key=nope", 403},
		{"/?key=s3cret", 200},
		{"/live/a", 401},
		{"/live/a?key=nope", 403},
		{"/live/a?key=s3cret", 200},
		{"/.mediapipe/mpegts.js", 200}, // scripts are public
	} {
		res, body := get(t, h, c.url)
		if res.StatusCode != c.want {
			t.Errorf("%s: status %d, want %d", c.url, res.StatusCode, c.want)
		}
		if c.want != 200 && strings.Contains(body, "live/a") && strings.HasSuffix(c.url, ".json") {
			t.Errorf("%s: lists the streams without the key: %s", c.url, body)
		}
		if strings.Contains(body, "s3cret") {
			t.Errorf("%s: the page carries the key", c.url)
		}
	}
	// The pages open with the key form when the key is missing or wrong.
	_, body := get(t, h, "/live/a?key=nope")
	if !strings.Contains(body, "Wrong play key") || strings.Contains(body, `id="keyform" method="get" hidden`) {
		t.Errorf("wrong-key page does not show its form:\n%s", body)
	}
}

func TestPages(t *testing.T) {
	h := handler("")
	res, body := get(t, h, "/")
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") ||
		res.Header.Get("Cache-Control") != "no-store" || !strings.Contains(res.Header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Fatalf("/: status %d headers %v", res.StatusCode, res.Header)
	}
	if !strings.Contains(body, "/.mediapipe/list.js") {
		t.Fatalf("/ does not load its script:\n%s", body)
	}

	res, body = get(t, h, "/live/a")
	if res.StatusCode != 200 || !strings.Contains(body, `data-name="live/a"`) || !strings.Contains(body, "/.mediapipe/mpegts.js") {
		t.Fatalf("/live/a: status %d\n%s", res.StatusCode, body)
	}
	hl := New(Options{Protocol: HLS})
	if _, body = get(t, hl, "/live/a"); !strings.Contains(body, "/.mediapipe/hls.min.js") || !strings.Contains(body, `data-protocol="hls"`) {
		t.Fatalf("HLS page does not load hls.js:\n%s", body)
	}

	// A name is text wherever it lands.
	evil := `/live/%3Cscript%3Ealert(1)%3C%2Fscript%3E%22'`
	_, body = get(t, h, evil)
	if strings.Contains(body, "<script>alert") || strings.Contains(body, `"'`) {
		t.Fatalf("name not escaped:\n%s", body)
	}

	for _, p := range []string{"/favicon.ico", "/live", "/live/", "/a//b", "/a/../b", "/.mediapipe/nope.js", "/.mediapipe/../VERSIONS"} {
		if res, _ := get(t, h, p); res.StatusCode != 404 {
			t.Errorf("%s: status %d, want 404", p, res.StatusCode)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /: status %d", rec.Code)
	}
}

func TestAssets(t *testing.T) {
	h := handler("")
	for _, name := range []string{"mpegts.js", "hls.min.js", "player.js", "list.js", "style.css", "VERSIONS", "mpegts.js.LICENSE", "hls.js.LICENSE", "mpegts.js.LICENSE.txt"} {
		res, body := get(t, h, Prefix+name)
		if res.StatusCode != 200 || len(body) == 0 || res.Header.Get("ETag") == "" {
			t.Errorf("%s: status %d, %d bytes, etag %q", name, res.StatusCode, len(body), res.Header.Get("ETag"))
			continue
		}
		req := httptest.NewRequest(http.MethodGet, Prefix+name, nil)
		req.Header.Set("If-None-Match", res.Header.Get("ETag"))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusNotModified {
			t.Errorf("%s: revalidation got %d, want 304", name, rec.Code)
		}
	}
	if res, _ := get(t, h, Prefix+"mpegts.js"); !strings.HasPrefix(res.Header.Get("Content-Type"), "text/javascript") {
		t.Errorf("mpegts.js served as %q", res.Header.Get("Content-Type"))
	}
}

func TestUptimeInJSON(t *testing.T) {
	now := time.Unix(1000, 0)
	tr := streaminfo.New("live/a", now.Add(-90*time.Second))
	h := handler("", tr.Snapshot(now))
	_, body := get(t, h, "/.mediapipe/streams.json")
	if !strings.Contains(body, `"uptime_seconds":90`) {
		t.Fatalf("uptime missing: %s", body)
	}
}

// TestAssetsGzip: a browser that accepts gzip gets the players compressed,
// and they inflate to the very files embedded.
func TestAssetsGzip(t *testing.T) {
	h := handler("")
	_, plain := get(t, h, Prefix+"hls.min.js")
	for _, c := range []struct {
		accept string
		gz     bool
	}{
		{"gzip, deflate, br", true},
		{"br;q=1.0, gzip;q=0.8", true},
		{"gzip;q=0", false},
		{"", false},
		{"identity", false},
	} {
		req := httptest.NewRequest(http.MethodGet, Prefix+"hls.min.js", nil)
		if c.accept != "" {
			req.Header.Set("Accept-Encoding", c.accept)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		res := rec.Result()
		if got := res.Header.Get("Content-Encoding") == "gzip"; got != c.gz {
			t.Errorf("Accept-Encoding %q: gzip %v, want %v", c.accept, got, c.gz)
			continue
		}
		if !c.gz {
			continue
		}
		zr, err := gzip.NewReader(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(zr)
		if err != nil || string(b) != plain {
			t.Fatalf("gzipped hls.min.js inflates to %d bytes (%v), want the %d embedded", len(b), err, len(plain))
		}
		if rec.Body.Len() > len(plain)/2 {
			t.Errorf("gzipped to %d of %d bytes", rec.Body.Len(), len(plain))
		}
		if res.Header.Get("ETag") == "" || !strings.Contains(res.Header.Get("Vary"), "Accept-Encoding") {
			t.Errorf("headers %v", res.Header)
		}
	}
}
