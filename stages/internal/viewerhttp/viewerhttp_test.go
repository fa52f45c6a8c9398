package viewerhttp

import (
	"net/http"
	"net/http/httptest"
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
