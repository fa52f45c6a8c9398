// Package viewerhttp is what every viewer port (httpflv-sink, hls-sink and
// their player pages) answers the same way: CORS, the methods it takes, and
// the play key.
package viewerhttp

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
)

// Preflight lets any site's player read the media (players are often
// hosted elsewhere), answers OPTIONS and refuses methods other than GET and
// HEAD. It reports whether the request is still to be served.
func Preflight(w http.ResponseWriter, r *http.Request) bool {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return true
	case http.MethodOptions:
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "*")
		w.WriteHeader(http.StatusNoContent)
	default:
		h.Set("Allow", "GET, HEAD, OPTIONS")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
	return false
}

// KeyStatus is 200 when r carries the play key want as ?key= (or want is
// empty), 401 when it carries none and 403 when it carries another.
func KeyStatus(r *http.Request, want string) int {
	if want == "" {
		return http.StatusOK
	}
	got := r.URL.Query().Get("key")
	switch {
	case got == "":
		return http.StatusUnauthorized
	case !sameKey(got, want):
		return http.StatusForbidden
	}
	return http.StatusOK
}

// sameKey compares digests, so the time taken tells nothing of the key,
// not even its length (ConstantTimeCompare returns at once on a length
// mismatch).
func sameKey(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// CheckKey answers 401 or 403 and reports false when r does not carry the
// play key want.
func CheckKey(w http.ResponseWriter, r *http.Request, want string) bool {
	switch KeyStatus(r, want) {
	case http.StatusUnauthorized:
		http.Error(w, "play key required", http.StatusUnauthorized)
		return false
	case http.StatusForbidden:
		http.Error(w, "wrong play key", http.StatusForbidden)
		return false
	}
	return true
}

// Serve runs a sink's HTTP server (serve: its Serve or ServeTLS on its
// listener) on a goroutine of its own, and calls shutdown if ctx ends
// before the sink's input does. Run calls the returned stop once its input
// has ended: stop calls shutdown (it must be idempotent) and returns when
// the server has stopped and neither goroutine is left.
func Serve(ctx context.Context, stage string, log *slog.Logger, serve func() error, shutdown func()) (stop func()) {
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(stage+": serve", "err", err)
		}
	}()
	done := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-ctx.Done():
			shutdown()
		case <-done:
		}
	}()
	return func() {
		close(done)
		<-watched
		shutdown()
		<-served
	}
}
