package viewerhttp

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

func TestPreflight(t *testing.T) {
	cases := []struct {
		method string
		serve  bool
		code   int
	}{
		{http.MethodGet, true, http.StatusOK},
		{http.MethodHead, true, http.StatusOK},
		{http.MethodOptions, false, http.StatusNoContent},
		{http.MethodPost, false, http.StatusMethodNotAllowed},
		{http.MethodDelete, false, http.StatusMethodNotAllowed},
	}
	for _, c := range cases {
		w := httptest.NewRecorder()
		if got := Preflight(w, httptest.NewRequest(c.method, "/live/x.flv", nil)); got != c.serve {
			t.Errorf("%s: serve %v, want %v", c.method, got, c.serve)
		}
		if w.Code != c.code {
			t.Errorf("%s: status %d, want %d", c.method, w.Code, c.code)
		}
		if w.Header().Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s: no CORS header", c.method)
		}
	}
}

func TestCheckKey(t *testing.T) {
	cases := []struct {
		want, url string
		ok        bool
		code      int
	}{
		{"", "/live/x.flv", true, http.StatusOK},
		{"", "/live/x.flv?key=any", true, http.StatusOK},
		{"s3cret", "/live/x.flv", false, http.StatusUnauthorized},
		{"s3cret", "/live/x.flv?key=", false, http.StatusUnauthorized},
		{"s3cret", "/live/x.flv?key=s3cre", false, http.StatusForbidden},
		{"s3cret", "/live/x.flv?key=s3cret", true, http.StatusOK},
	}
	for _, c := range cases {
		w := httptest.NewRecorder()
		if got := CheckKey(w, httptest.NewRequest(http.MethodGet, c.url, nil), c.want); got != c.ok {
			t.Errorf("%s with key %q: ok %v, want %v", c.url, c.want, got, c.ok)
		}
		if w.Code != c.code {
			t.Errorf("%s with key %q: status %d, want %d", c.url, c.want, w.Code, c.code)
		}
	}
}

// TestServeStops: the server stops when ctx ends first (shutdown called
// from the watch) and when the sink's input ends first (stop); either way
// stop returns only once the server has returned.
func TestServeStops(t *testing.T) {
	for _, byCtx := range []bool{true, false} {
		ctx, cancel := context.WithCancel(context.Background())
		srv := httptest.NewUnstartedServer(http.NotFoundHandler())
		var once sync.Once
		shutdowns := 0
		shutdown := func() { once.Do(func() { srv.Config.Close() }); shutdowns++ }
		stop := Serve(ctx, "test", slog.New(slog.DiscardHandler), func() error { return srv.Config.Serve(srv.Listener) }, shutdown)
		if byCtx {
			cancel()
		}
		stop()
		cancel()
		if shutdowns == 0 {
			t.Errorf("byCtx %v: shutdown never called", byCtx)
		}
		if _, err := http.Get("http://" + srv.Listener.Addr().String()); err == nil {
			t.Errorf("byCtx %v: the server still answers after stop", byCtx)
		}
	}
}
