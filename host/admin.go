package host

import (
	"context"
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

// PipelineStatus is one pipeline in /api/streams.
type PipelineStatus struct {
	Name    string         `json:"name"`
	Streams []StreamStatus `json:"streams"`
}

// Status returns what /api/streams serves.
func (rt *Runtime) Status() []PipelineStatus {
	pipes := rt.Running()
	out := make([]PipelineStatus, 0, len(pipes))
	for _, p := range pipes {
		out = append(out, PipelineStatus{Name: p.Name, Streams: p.Streams()})
	}
	return out
}

func (rt *Runtime) startAdmin(listen string) (*admin, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("admin: listen %s: %w", listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(rt.Metrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /api/streams", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{"pipelines": rt.Status()})
	})
	mux.HandleFunc("POST /api/reload", rt.serveReload)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	a := &admin{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	rt.mu.Lock()
	rt.AdminAddr = ln.Addr()
	rt.mu.Unlock()
	go func() { _ = a.srv.Serve(ln) }()
	rt.log.Info("admin listening", "addr", ln.Addr().String(), "metrics", "/metrics", "status", "/api/streams", "reload", "POST /api/reload")
	return a, nil
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
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(res)
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
