package host

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// admin serves /metrics and /api/streams while the runtime runs.
type admin struct {
	ln  net.Listener
	srv *http.Server
	// cfg is read by every request, so a reload that changes the token or
	// metrics_public (not the address) applies at once on the same socket.
	cfg atomic.Pointer[AdminConfig]
}

func (rt *Runtime) startAdmin(cfg *AdminConfig) (*admin, error) {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin: listen %s: %w", cfg.Listen, err)
	}
	a := &admin{ln: ln}
	a.cfg.Store(cfg)
	token := func() string { return a.cfg.Load().Token }
	api := func(h http.HandlerFunc) http.Handler { return requireToken(token, h) }
	mux := http.NewServeMux()
	metrics := promhttp.HandlerFor(rt.Metrics.Registry, promhttp.HandlerOpts{})
	guarded := requireToken(token, metrics)
	mux.Handle("GET /metrics", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.cfg.Load().MetricsPublic {
			metrics.ServeHTTP(w, r)
			return
		}
		guarded.ServeHTTP(w, r)
	}))
	mux.Handle("GET /api/streams", api(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"pipelines": rt.Status()})
	}))
	mux.Handle("GET /api/streams/{name...}", api(rt.serveStream))
	mux.Handle("DELETE /api/streams/{name...}", api(rt.kickPublisher))
	mux.Handle("DELETE /api/viewers/{id}", api(rt.kickViewer))
	mux.Handle("GET /api/pipelines", api(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"pipelines": rt.PipelinesStatus()})
	}))
	mux.Handle("GET /api/edges", api(rt.serveEdges))
	mux.Handle("GET /api/control", api(rt.serveControl))
	mux.Handle("POST /api/reload", api(rt.serveReload))
	mux.Handle("/api/", api(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such endpoint (see docs/api.md)"})
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	rt.mu.Lock()
	rt.AdminAddr = ln.Addr()
	rt.mu.Unlock()
	go func() { _ = a.srv.Serve(ln) }()
	rt.log.Info("admin listening", "addr", ln.Addr().String(), "metrics", "/metrics", "api", "/api/", "token", cfg.Token != "")
	return a, nil
}

// requireToken lets a request through to h only with Authorization: Bearer
// and the token (compared in constant time); without a token everything
// passes. token is asked per request: a reload may change it.
func requireToken(token func() string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := token()
		if tok == "" {
			h.ServeHTTP(w, r)
			return
		}
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+tok)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mediapipe"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "needs Authorization: Bearer TOKEN ([admin] token)"})
			return
		}
		h.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// serveReload answers POST /api/reload with what the reload did: 200 when
// applied whole, 422 with the problems when the file was refused, 500 with
// the errors when a pipeline could not start, 503 when reloads are not
// available.
func (rt *Runtime) serveReload(w http.ResponseWriter, r *http.Request) {
	res, err := rt.Reload(r.Context())
	code := http.StatusOK
	switch {
	case errors.Is(err, ErrReloadRefused):
		code = http.StatusUnprocessableEntity
	case errors.Is(err, ErrNoReload):
		code = http.StatusServiceUnavailable
		res = &ReloadResult{Errors: []string{err.Error()}}
	case err != nil && res == nil:
		code = http.StatusInternalServerError
		res = &ReloadResult{Errors: []string{err.Error()}}
	case err != nil:
		code = http.StatusInternalServerError
	}
	writeJSON(w, code, res)
}

func (a *admin) close() {
	if a == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := a.srv.Shutdown(ctx); err != nil {
		_ = a.srv.Close()
	}
}
