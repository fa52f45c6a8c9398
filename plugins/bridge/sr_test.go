package bridge

import (
	"context"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core/sr"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// TestSRBackendSlowNotKilled: an SR plugin whose calls run out of their
// deadline costs each call its deadline, no more, and is not killed for it
// however often (sr-enhancer's deadlines follow the stream's budget, not the
// backend's health): the same process answers the next call it can.
func TestSRBackendSlowNotKilled(t *testing.T) {
	b, err := OpenSRBackend(bin(t, "hangsr"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	sb := b.(*SRBackend)
	in := &sr.Image{Width: 4, Height: 4, Format: "rgb24", Pix: make([]byte, 4*4*3)}
	enhance := func(scale int, deadline time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		done := make(chan error, 1)
		go func() {
			_, err := b.Enhance(ctx, in, scale)
			done <- err
		}()
		return testrun.Within(t, done, deadline+time.Second, "Enhance to return")
	}
	first := sb.PID()
	for i := range maxTimeouts + 1 {
		if err := enhance(2, 100*time.Millisecond); err == nil {
			t.Fatalf("hang %d answered", i)
		}
	}
	if err := enhance(1, 2*time.Second); err != nil {
		t.Fatalf("after the timeouts: %v", err)
	}
	if pid := sb.PID(); pid != first || !alive(pid) {
		t.Errorf("pid %d → %d: a slow SR backend was replaced", first, pid)
	}
}
