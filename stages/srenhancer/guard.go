package srenhancer

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/sr"
)

// guard stands between the stage and its backend: it bounds each call by
// the timeout and by the keyframe's budget, checks the result, counts
// failures, logs once per burst of them, and leaves a failing backend alone
// for a back-off period.
type guard struct {
	env      *core.Env
	timeout  time.Duration
	backoff  time.Duration
	maxFails int

	failures *core.DropCounter
	tooSlow  *core.DropCounter
	answered prometheus.Counter
	skipped  prometheus.Counter

	mu       sync.Mutex
	b        sr.Backend
	inARow   int // consecutive failures; not reset by a back-off, so one more failure after it backs off again
	burst    int // failures since the last success
	until    time.Time
	backedOf bool // a back-off was logged in this burst
	behind   bool // a keyframe with no budget left was logged since the last success
}

func newGuard(env *core.Env, timeout, backoff time.Duration, maxFails int) *guard {
	return &guard{
		env: env, timeout: timeout, backoff: backoff, maxFails: maxFails,
		failures: env.Metrics.Drop("backend_failure"),
		tooSlow:  env.Metrics.Drop("backend_too_slow"),
		answered: env.Metrics.Counter("backend_enhanced"),
		skipped:  env.Metrics.Counter("backend_skipped"),
	}
}

func (g *guard) setBackend(b sr.Backend) {
	g.mu.Lock()
	g.b = b
	g.mu.Unlock()
}

// enhance returns the backend's picture, or nil when the caller must make do
// with its conventional upscale. budget is the wall time after which an
// answer is of no use to the stream (zero: only the timeout bounds the call).
// A call the budget cuts short is counted as backend_too_slow and counts
// towards the back-off like a failure; a keyframe whose budget is spent
// before the call is counted as backend_too_slow and not asked at all.
func (g *guard) enhance(ctx context.Context, in *sr.Image, scale int, budget time.Time) *sr.Image {
	g.mu.Lock()
	b := g.b
	resting := g.env.Clock.Now().Before(g.until)
	g.mu.Unlock()
	if b == nil || resting {
		g.skipped.Inc()
		return nil
	}
	// Wall time, not env.Clock: the budget comes from ingest wall times and
	// bounds a real wait.
	start := time.Now()
	deadline, cut := start.Add(g.timeout), false
	if !budget.IsZero() && budget.Before(deadline) {
		deadline, cut = budget, true
	}
	if !deadline.After(start) {
		g.tooSlow.Inc()
		g.mu.Lock()
		if !g.behind {
			g.behind = true
			g.env.Log.Warn("stream too far behind to wait for the sr backend: keyframes are upscaled conventionally until it catches up",
				"over_budget", start.Sub(deadline))
		}
		g.mu.Unlock()
		return nil
	}
	cctx, cancel := context.WithDeadline(ctx, deadline)
	out, err := b.Enhance(cctx, in, scale)
	cancel()
	late := !time.Now().Before(deadline)
	if err == nil && late {
		err = fmt.Errorf("answered after %v", time.Since(start).Round(time.Millisecond))
	}
	if err == nil {
		err = checkResult(out, in, scale)
	}
	if err != nil && ctx.Err() != nil {
		return nil // shutting down: not the backend's failure
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil {
		if late && cut {
			g.tooSlow.Inc()
			err = fmt.Errorf("no answer within the stream's budget of %v (one GOP less a reserve): %w", deadline.Sub(start).Round(time.Millisecond), err)
		} else {
			g.failures.Inc()
		}
		g.inARow++
		g.burst++
		if g.burst == 1 {
			g.env.Log.Warn("sr backend failed: keyframes are upscaled conventionally until it answers", "err", err)
		}
		if g.inARow >= g.maxFails && g.backoff > 0 {
			g.until = g.env.Clock.Now().Add(g.backoff)
			if !g.backedOf {
				g.backedOf = true
				g.env.Log.Warn("sr backend left alone after repeated failures", "failures", g.inARow, "for", g.backoff, "err", err)
			}
		}
		return nil
	}
	if g.burst > 0 {
		g.env.Log.Info("sr backend answering again", "failures", g.burst)
	}
	g.inARow, g.burst, g.backedOf, g.behind = 0, 0, false, false
	g.answered.Inc()
	return out
}

func checkResult(out, in *sr.Image, scale int) error {
	if out == nil {
		return fmt.Errorf("backend returned no image")
	}
	if out.Width != in.Width*scale || out.Height != in.Height*scale {
		return fmt.Errorf("backend returned %dx%d, want %dx%d", out.Width, out.Height, in.Width*scale, in.Height*scale)
	}
	if out.Format != "rgb24" && out.Format != "bgr24" {
		return fmt.Errorf("backend returned format %q, want rgb24 or bgr24", out.Format)
	}
	return out.Validate()
}
