package bridge

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/sr"
	"github.com/mediapipe/mediapipe/plugins/internal/pluginpb"
	"github.com/mediapipe/mediapipe/plugins/internal/shared"
)

// SRBackend is an sr.Backend served by a plugin process. A call that finds
// the process dead starts it again, with back-off (see respawner), so
// sr-enhancer upscales conventionally instead of waiting. Restarts are
// counted.
type SRBackend struct {
	respawner
	name string
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
	b := &SRBackend{respawner: newRespawner(p, shared.KindSR, "sr plugin", log), name: p.spec.Name}
	b.restarts = core.NewMetrics().Stage("", 0, "sr-plugin").Counter(SRBackendCounter)
	return b, nil
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

// Enhance implements sr.Backend.
func (b *SRBackend) Enhance(ctx context.Context, in *sr.Image, scale int) (*sr.Image, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	p, err := b.current(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := p.sr.Enhance(ctx, &pluginpb.EnhanceRequest{
		Image: &pluginpb.Image{Width: int32(in.Width), Height: int32(in.Height), Format: in.Format, Pix: in.Pix},
		Scale: int32(scale),
	})
	// No kill after timeouts in a row, unlike a policy: sr-enhancer cuts
	// calls at the stream's budget, so a slow but sound backend (a model
	// loaded at great cost) would be killed for the stream falling behind.
	if status.Code(err) == codes.Unavailable && exitedSoon(ctx, p) {
		b.gone(p)
	}
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
	b.close()
	return nil
}

// statusMessage is a call error's text as one line of at most
// maxErrorText bytes: a plugin's error text is logged.
func statusMessage(err error) string {
	if st, ok := status.FromError(err); ok {
		return firstLine(st.Message(), maxErrorText)
	}
	return firstLine(err.Error(), maxErrorText)
}

// maxErrorText bounds a plugin's error text in the host's errors.
const maxErrorText = 256

// firstLine is s's first non-empty line, cut to at most n bytes (plus "…")
// on a character boundary.
func firstLine(s string, n int) string {
	s = strings.TrimLeft(s, " \t\r\n")
	s, _, _ = strings.Cut(s, "\n")
	s = strings.TrimRight(s, " \t\r")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n-- // not inside a character
	}
	return s[:n] + "…"
}
