package host

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// admin serves /metrics and /api/streams while the runtime runs.
type admin struct {
	ln  net.Listener
	srv *http.Server
}

func (rt *Runtime) startAdmin(cfg *AdminConfig) (*admin, error) {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin: listen %s: %w", cfg.Listen, err)
	}
	api := func(h http.HandlerFunc) http.Handler { return requireToken(cfg.Token, h) }
	mux := http.NewServeMux()
	var metrics http.Handler = promhttp.HandlerFor(rt.Metrics.Registry, promhttp.HandlerOpts{})
	if !cfg.MetricsPublic {
		metrics = requireToken(cfg.Token, metrics)
	}
	mux.Handle("GET /metrics", metrics)
	mux.Handle("GET /api/streams", api(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"pipelines": rt.Status()})
	}))
	mux.Handle("GET /api/streams/{name...}", api(rt.serveStream))
	mux.Handle("DELETE /api/streams/{name...}", api(rt.kickPublisher))
	mux.Handle("DELETE /api/viewers/{id}", api(rt.kickViewer))
	mux.Handle("GET /api/pipelines", api(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"pipelines": rt.PipelinesStatus()})
	}))
	mux.Handle("POST /api/reload", api(rt.serveReload))
	mux.Handle("/api/", api(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such endpoint (see docs/api.md)"})
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	a := &admin{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	rt.mu.Lock()
	rt.AdminAddr = ln.Addr()
	rt.mu.Unlock()
	go func() { _ = a.srv.Serve(ln) }()
	rt.log.Info("admin listening", "addr", ln.Addr().String(), "metrics", "/metrics", "api", "/api/", "token", cfg.Token != "")
	return a, nil
}

// requireToken lets a request through to h only with Authorization: Bearer
// token (compared in constant time); without a token everything passes.
func requireToken(token string, h http.Handler) http.Handler {
	if token == "" {
		return h
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
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
