package cli

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestHealth: the container health check passes only while /healthz
// answers 200: a failing or absent server makes it exit 1.
func TestHealth(t *testing.T) {
	code := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(code)
	}))
	defer srv.Close()
	if got := Main([]string{"health", srv.URL + "/healthz"}, io.Discard, io.Discard); got != 0 {
		t.Errorf("healthy server: exit %d, want 0", got)
	}
	code = http.StatusServiceUnavailable
	if got := Main([]string{"health", srv.URL + "/healthz"}, io.Discard, io.Discard); got != 1 {
		t.Errorf("503: exit %d, want 1", got)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if got := Main([]string{"health", "--timeout", "1s", "http://" + addr + "/healthz"}, io.Discard, io.Discard); got != 1 {
		t.Errorf("nothing listening: exit %d, want 1", got)
	}
}

func TestDefaultHealthURL(t *testing.T) {
	for in, want := range map[string]string{
		"":              "http://127.0.0.1:9090/healthz",
		"0.0.0.0:9091":  "http://127.0.0.1:9091/healthz",
		"[::]:9092":     "http://[::1]:9092/healthz",
		":9093":         "http://127.0.0.1:9093/healthz",
		"10.1.2.3:9094": "http://10.1.2.3:9094/healthz",
	} {
		if got := defaultHealthURL(in); got != want {
			t.Errorf("defaultHealthURL(%q) = %q, want %q", in, got, want)
		}
	}
}
