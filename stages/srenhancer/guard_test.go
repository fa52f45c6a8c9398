package srenhancer

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/sr"
	"github.com/mediapipe/mediapipe/core/stagetest"
)

type fakeBackend struct {
	calls int
	fail  bool
}

func (f *fakeBackend) Enhance(ctx context.Context, in *sr.Image, scale int) (*sr.Image, error) {
	f.calls++
	if f.fail {
		return nil, errors.New("down")
	}
	return &sr.Image{Width: in.Width * scale, Height: in.Height * scale, Format: "bgr24", Pix: make([]byte, in.Width*scale*in.Height*scale*3)}, nil
}

func (f *fakeBackend) Close() error { return nil }

func TestGuardBackoff(t *testing.T) {
	env := core.TestEnv("sr-enhancer")
	clock := stagetest.NewFakeClock(time.Unix(1_700_000_000, 0))
	env.Clock = clock
	g := newGuard(env, time.Second, 10*time.Second, 3)
	fb := &fakeBackend{fail: true}
	g.setBackend(fb)
	in := &sr.Image{Width: 2, Height: 2, Format: "rgb24", Pix: make([]byte, 12)}
	call := func() bool { return g.enhance(context.Background(), in, 2, time.Time{}) != nil }
	for _, step := range []struct {
		advance   time.Duration
		fail      bool
		wantOK    bool
		wantCalls int
	}{
		{0, true, false, 1},
		{0, true, false, 2},
		{0, true, false, 3},                // third in a row: back-off starts
		{time.Second, true, false, 3},      // left alone
		{8 * time.Second, true, false, 3},  // still (10 s)
		{2 * time.Second, true, false, 4},  // probe fails: back off again at once
		{5 * time.Second, false, false, 4}, // left alone though it is back
		{5 * time.Second, false, true, 5},  // probe succeeds
		{0, true, false, 6},                // a new burst needs 3 again
		{0, false, true, 7},
	} {
		clock.Advance(step.advance)
		fb.fail = step.fail
		if ok := call(); ok != step.wantOK || fb.calls != step.wantCalls {
			t.Fatalf("after %v: ok %v calls %d, want %v %d", step.advance, ok, fb.calls, step.wantOK, step.wantCalls)
		}
	}
	if got := env.Metrics.Drop("backend_failure").Value(); got != 5 {
		t.Fatalf("backend_failure = %v, want 5", got)
	}
	if got := core.CounterValue(env.Metrics.Counter("backend_skipped")); got != 3 {
		t.Fatalf("backend_skipped = %v, want 3", got)
	}
	// A wrongly sized answer is a failure too.
	g2 := newGuard(env, time.Second, time.Second, 3)
	g2.setBackend(&wrongSize{})
	if g2.enhance(context.Background(), in, 2, time.Time{}) != nil {
		t.Fatal("a wrongly sized picture was accepted")
	}
}

type wrongSize struct{ fakeBackend }

func (w *wrongSize) Enhance(ctx context.Context, in *sr.Image, scale int) (*sr.Image, error) {
	return &sr.Image{Width: in.Width, Height: in.Height, Format: "bgr24", Pix: make([]byte, in.Width*in.Height*3)}, nil
}

// sleepy answers correctly, but only after delay (or when ctx ends).
type sleepy struct {
	fakeBackend
	delay time.Duration
}

func (s *sleepy) Enhance(ctx context.Context, in *sr.Image, scale int) (*sr.Image, error) {
	s.calls++
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &sr.Image{Width: in.Width * scale, Height: in.Height * scale, Format: "bgr24", Pix: make([]byte, in.Width*scale*in.Height*scale*3)}, nil
}

// TestGuardBudget: the keyframe's budget, not only the timeout, ends the
// wait; a call it cuts short is counted as too slow and counts towards the
// back-off; a keyframe whose budget is already spent is not even asked.
func TestGuardBudget(t *testing.T) {
	env := core.TestEnv("sr-enhancer")
	env.Clock = stagetest.NewFakeClock(time.Unix(1_700_000_000, 0))
	g := newGuard(env, time.Second, 10*time.Second, 3)
	sb := &sleepy{delay: 300 * time.Millisecond}
	g.setBackend(sb)
	in := &sr.Image{Width: 2, Height: 2, Format: "rgb24", Pix: make([]byte, 12)}
	slow := env.Metrics.Drop("backend_too_slow")

	if g.enhance(context.Background(), in, 2, time.Now().Add(-time.Millisecond)) != nil || sb.calls != 0 || slow.Value() != 1 {
		t.Fatalf("spent budget: calls %d, too slow %v", sb.calls, slow.Value())
	}
	start := time.Now()
	if g.enhance(context.Background(), in, 2, time.Now().Add(50*time.Millisecond)) != nil {
		t.Fatal("an answer past the budget was used")
	}
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Fatalf("waited %v past a 50 ms budget", d)
	}
	if sb.calls != 1 || slow.Value() != 2 || env.Metrics.Drop("backend_failure").Value() != 0 {
		t.Fatalf("calls %d, too slow %v", sb.calls, slow.Value())
	}
	if g.enhance(context.Background(), in, 2, time.Now().Add(time.Minute)) == nil { // the timeout (1 s) binds: it answers in 300 ms
		t.Fatal("an answer within budget and timeout was refused")
	}
	// Over-budget answers, not spent budgets, count towards the back-off.
	for range 2 {
		g.enhance(context.Background(), in, 2, time.Now().Add(-time.Millisecond))
	}
	for range 3 {
		g.enhance(context.Background(), in, 2, time.Now().Add(20*time.Millisecond))
	}
	calls := sb.calls
	if g.enhance(context.Background(), in, 2, time.Time{}) != nil || sb.calls != calls {
		t.Fatal("not left alone after 3 over-budget answers in a row")
	}
	if got := core.CounterValue(env.Metrics.Counter("backend_skipped")); got != 1 {
		t.Fatalf("backend_skipped = %v, want 1", got)
	}
}
