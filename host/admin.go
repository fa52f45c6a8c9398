package host

import (
	"context"
	"encoding/json"
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
	out := make([]PipelineStatus, 0, len(rt.Pipelines))
	for _, p := range rt.Pipelines {
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
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	a := &admin{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	rt.AdminAddr = ln.Addr()
	go func() { _ = a.srv.Serve(ln) }()
	rt.log.Info("admin listening", "addr", ln.Addr().String(), "metrics", "/metrics", "status", "/api/streams")
	return a, nil
}

func (a *admin) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := a.srv.Shutdown(ctx); err != nil {
		_ = a.srv.Close()
	}
}
