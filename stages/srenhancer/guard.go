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
// the timeout, checks the result, counts failures, logs once per burst of
// them, and leaves a failing backend alone for a back-off period.
type guard struct {
	env      *core.Env
	timeout  time.Duration
	backoff  time.Duration
	maxFails int

	failures *core.DropCounter
	answered prometheus.Counter
	skipped  prometheus.Counter

	mu       sync.Mutex
	b        sr.Backend
	inARow   int // consecutive failures; not reset by a back-off, so one more failure after it backs off again
	burst    int // failures since the last success
	until    time.Time
	backedOf bool // a back-off was logged in this burst
}

func newGuard(env *core.Env, timeout, backoff time.Duration, maxFails int) *guard {
	return &guard{
		env: env, timeout: timeout, backoff: backoff, maxFails: maxFails,
		failures: env.Metrics.Drop("backend_failure"),
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
// with its conventional upscale.
func (g *guard) enhance(ctx context.Context, in *sr.Image, scale int) *sr.Image {
	g.mu.Lock()
	b := g.b
	resting := g.env.Clock.Now().Before(g.until)
	g.mu.Unlock()
	if b == nil || resting {
		g.skipped.Inc()
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, g.timeout)
	out, err := b.Enhance(cctx, in, scale)
	cancel()
	if err == nil {
		err = checkResult(out, in, scale)
	}
	if err != nil && ctx.Err() != nil {
		return nil // shutting down: not the backend's failure
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil {
		g.failures.Inc()
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
	g.inARow, g.burst, g.backedOf = 0, 0, false
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
