package bridge

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/status"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/sr"
	"github.com/mediapipe/mediapipe/plugins/internal/pluginpb"
	"github.com/mediapipe/mediapipe/plugins/internal/shared"
)

// SRBackend is an sr.Backend served by a plugin process. A call that finds
// the process dead starts it again, with the stage bridge's back-off: a
// start is tried no sooner than the back-off after the previous one (50 ms,
// doubling up to 5 s while processes die young or fail to start; reset once
// one has run 30 s). Calls in between fail at once, so sr-enhancer upscales
// conventionally instead of waiting. Restarts are counted.
type SRBackend struct {
	path string

	procSlot // its mu also guards:
	log      *slog.Logger
	restarts prometheus.Counter
	started  time.Time // of proc, or of the last start attempt
	backoff  time.Duration
	closed   bool
	name     string
	now      func() time.Time // time.Now; tests move it
}

// SRBackendCounter is the event counter a plugin SR backend's restarts are
// counted in: mediapipe_sr_backend_restarts_total of the
// stage that Instruments it.
const SRBackendCounter = "backend_restarts"

// OpenSRBackend starts the SR backend plugin at path (sr.PluginOpener). It
// logs to slog.Default and counts restarts privately until Instrument.
func OpenSRBackend(path string) (sr.Backend, error) {
	log := slog.Default()
	p, err := start(path, shared.KindSR, log)
	if err != nil {
		return nil, err
	}
	restarts := core.NewMetrics().Stage("", 0, "sr-plugin").Counter(SRBackendCounter)
	return &SRBackend{
		path: path, procSlot: procSlot{proc: p}, log: log, restarts: restarts, started: time.Now(),
		backoff: minBackoff, name: p.spec.Name, now: time.Now,
	}, nil
}

// Instrument makes the backend log to log and count its restarts in m
// (under SRBackendCounter), so they show in /metrics with the calling
// stage's labels. sr-enhancer calls it right after sr.OpenPlugin, through an
// interface so it needs no import of this package:
//
//	if i, ok := b.(interface {
//		Instrument(*core.StageMetrics, *slog.Logger)
//	}); ok {
//		i.Instrument(env.Metrics, env.Log)
//	}
func (b *SRBackend) Instrument(m *core.StageMetrics, log *slog.Logger) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if m != nil {
		b.restarts = m.Counter(SRBackendCounter)
	}
	if log != nil {
		b.log = log
	}
}

// Name is the backend's name as the plugin describes it.
func (b *SRBackend) Name() string { return b.name }

func (b *SRBackend) current() (*process, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, fmt.Errorf("sr plugin %s: closed", b.path)
	}
	if b.proc != nil && !b.proc.exited() {
		return b.proc, nil
	}
	now := b.now()
	if b.proc != nil {
		b.proc.kill()
		lived := now.Sub(b.started)
		b.log.Warn("sr plugin died", "path", b.path, "pid", b.proc.pid, "lived", lived.Round(time.Millisecond))
		b.proc = nil
		if lived > stableAfter {
			b.backoff = minBackoff
		}
	}
	if next := b.started.Add(b.backoff); now.Before(next) {
		return nil, fmt.Errorf("sr plugin %s: down, next start in %s", b.path, next.Sub(now).Round(time.Millisecond))
	}
	b.started = now
	// Whatever happens to this start, the next one waits longer unless the
	// process lives stableAfter.
	wait := b.backoff
	b.backoff = min(2*b.backoff, maxBackoff)
	p, err := start(b.path, shared.KindSR, b.log)
	if err != nil {
		b.log.Error("sr plugin restart failed", "path", b.path, "err", err, "next_in", b.backoff)
		return nil, err
	}
	b.restarts.Inc()
	b.log.Warn("sr plugin restarted", "path", b.path, "pid", p.pid, "after", wait)
	b.proc = p
	return p, nil
}

// Enhance implements sr.Backend.
func (b *SRBackend) Enhance(ctx context.Context, in *sr.Image, scale int) (*sr.Image, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	p, err := b.current()
	if err != nil {
		return nil, err
	}
	resp, err := p.sr.Enhance(ctx, &pluginpb.EnhanceRequest{
		Image: &pluginpb.Image{Width: int32(in.Width), Height: int32(in.Height), Format: in.Format, Pix: in.Pix},
		Scale: int32(scale),
	})
	if err != nil {
		return nil, fmt.Errorf("sr plugin %s: %s", b.path, statusMessage(err))
	}
	im := resp.GetImage()
	out := &sr.Image{Width: int(im.GetWidth()), Height: int(im.GetHeight()), Format: im.GetFormat(), Pix: im.GetPix()}
	if err := out.Validate(); err != nil {
		return nil, fmt.Errorf("sr plugin %s: %w", b.path, err)
	}
	return out, nil
}

// Close implements sr.Backend: it stops the process.
func (b *SRBackend) Close() error {
	b.mu.Lock()
	p := b.proc
	b.proc, b.closed = nil, true
	b.mu.Unlock()
	if p != nil {
		p.kill()
	}
	return nil
}

func statusMessage(err error) string {
	if st, ok := status.FromError(err); ok {
		return st.Message()
	}
	return err.Error()
}
