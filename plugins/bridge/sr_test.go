package bridge

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/sr"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// TestSRBackendHungKilled: an SR plugin alive but never answering costs
// each call its deadline, and after maxTimeouts of them in a row it is
// killed (logged) and a new process answers; the restart is counted.
func TestSRBackendHungKilled(t *testing.T) {
	b, err := OpenSRBackend(bin(t, "hangsr"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	sb := b.(*SRBackend)
	env := core.TestEnv("sr-enhancer")
	sink := &logSink{}
	sb.Instrument(env.Metrics, slog.New(sink))
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
	for i := range maxTimeouts {
		if err := enhance(2, 150*time.Millisecond); err == nil {
			t.Fatalf("hang %d answered", i)
		}
		if i < maxTimeouts-1 && sb.PID() != first {
			t.Fatalf("killed after %d timeouts", i+1)
		}
	}
	waitGone(t, first)
	if !strings.Contains(strings.Join(sink.all(), "\n"), "sr plugin hung") {
		t.Errorf("no log of the kill: %q", sink.all())
	}
	testrun.Eventually(t, 10*time.Second, "a new process to answer", func() bool {
		return enhance(1, 2*time.Second) == nil
	})
	if pid := sb.PID(); pid == first || !alive(pid) {
		t.Fatalf("pid %d → %d", first, pid)
	}
	if n := core.CounterValue(env.Metrics.Counter(SRBackendCounter)); n != 1 {
		t.Errorf("restarts = %v, want 1", n)
	}
}
