// Package authhooktest is an auth_url receiver for tests: a real HTTP
// server on loopback that records what the stages ask and answers as told.
package authhooktest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mediapipe/mediapipe/stages/internal/authhook"
)

// Receiver is a hook on 127.0.0.1. Answer decides each call's status; it
// may block (a hanging hook) until the request's context ends.
type Receiver struct {
	*httptest.Server
	Answer atomic.Pointer[func(r *http.Request, req authhook.Request) int]

	calls atomic.Int64
	mu    sync.Mutex
	got   []authhook.Request
}

// New starts a receiver answering status to every call until told
// otherwise (SetStatus, SetAnswer); it is closed when the test ends.
func New(t testing.TB, status int) *Receiver {
	t.Helper()
	rc := &Receiver{}
	rc.SetStatus(status)
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req authhook.Request
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &req) != nil {
			t.Errorf("auth hook called with %s %q: %.200s", r.Method, r.Header.Get("Content-Type"), body)
		}
		rc.calls.Add(1)
		rc.mu.Lock()
		rc.got = append(rc.got, req)
		rc.mu.Unlock()
		w.WriteHeader((*rc.Answer.Load())(r, req))
	}))
	// Close would wait for a hanging handler: end them first.
	t.Cleanup(func() {
		rc.Server.CloseClientConnections()
		rc.Server.Close()
	})
	return rc
}

// SetStatus makes every later call answer status.
func (rc *Receiver) SetStatus(status int) {
	rc.SetAnswer(func(*http.Request, authhook.Request) int { return status })
}

// SetAnswer makes f answer every later call.
func (rc *Receiver) SetAnswer(f func(r *http.Request, req authhook.Request) int) {
	rc.Answer.Store(&f)
}

// Hang makes every later call wait until its client gives up.
func (rc *Receiver) Hang() {
	rc.SetAnswer(func(r *http.Request, _ authhook.Request) int {
		<-r.Context().Done()
		return http.StatusOK
	})
}

// Calls is how many calls arrived.
func (rc *Receiver) Calls() int { return int(rc.calls.Load()) }

// Requests returns the bodies received so far.
func (rc *Receiver) Requests() []authhook.Request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]authhook.Request(nil), rc.got...)
}
