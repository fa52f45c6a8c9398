package testrun

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core/media/flv"
)

var client = &http.Client{Timeout: 2 * time.Second}

// WaitPlayable polls url until it answers 200, or fails the test.
func WaitPlayable(t testing.TB, url string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not playable within %s (last error: %v)", url, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Viewer reads one HTTP-FLV response tag by tag until it ends.
type Viewer struct {
	done chan struct{}
	mu   sync.Mutex
	tags [][]byte
	err  error
}

// Watch starts a viewer of url.
func Watch(url string) *Viewer {
	v := &Viewer{done: make(chan struct{})}
	go func() {
		defer close(v.done)
		resp, err := http.Get(url) // no timeout: a live response lasts as long as the stream
		if err != nil {
			v.err = err
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			v.err = fmt.Errorf("status %s", resp.Status)
			return
		}
		r := flv.NewReader(resp.Body)
		for {
			tag, err := r.Next()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					v.err = err
				}
				return
			}
			v.mu.Lock()
			v.tags = append(v.tags, tag)
			v.mu.Unlock()
		}
	}()
	return v
}

// Count is how many tags the viewer has read so far.
func (v *Viewer) Count() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.tags)
}

// Done is closed when the response has ended, cleanly or not.
func (v *Viewer) Done() <-chan struct{} { return v.done }

// Err is why the response ended, after Done: nil for a clean end.
func (v *Viewer) Err() error {
	<-v.done
	return v.err
}

// Wait waits for the response to end (the stream's end ends it) and
// returns every tag; a failed request or a truncated tag fails the test.
func (v *Viewer) Wait(t testing.TB, within time.Duration) [][]byte {
	t.Helper()
	select {
	case <-v.done:
	case <-time.After(within):
		t.Fatalf("viewer still reading after %s: the stream's end did not end the response", within)
	}
	if v.err != nil {
		t.Fatalf("viewer: %v", v.err)
	}
	return v.tags
}
