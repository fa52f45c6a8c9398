package bridge

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"google.golang.org/grpc/status"

	"github.com/mediapipe/mediapipe/core/sr"
	"github.com/mediapipe/mediapipe/plugins/internal/pluginpb"
	"github.com/mediapipe/mediapipe/plugins/internal/shared"
)

// SRBackend is an sr.Backend served by a plugin process. A call that finds
// the process dead restarts it once.
type SRBackend struct {
	path string
	log  *slog.Logger

	mu     sync.Mutex
	proc   *process
	closed bool
	name   string
}

// OpenSRBackend starts the SR backend plugin at path (sr.PluginOpener).
func OpenSRBackend(path string) (sr.Backend, error) {
	log := slog.Default()
	p, err := start(path, shared.KindSR, log)
	if err != nil {
		return nil, err
	}
	return &SRBackend{path: path, log: log, proc: p, name: p.spec.Name}, nil
}

// Name is the backend's name as the plugin describes it.
func (b *SRBackend) Name() string { return b.name }

// PID is the plugin's current process id (0 while none runs).
func (b *SRBackend) PID() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.proc == nil {
		return 0
	}
	return b.proc.pid
}

func (b *SRBackend) current() (*process, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, fmt.Errorf("sr plugin %s: closed", b.path)
	}
	if b.proc != nil && !b.proc.exited() {
		return b.proc, nil
	}
	if b.proc != nil {
		b.proc.kill()
		b.proc = nil
	}
	p, err := start(b.path, shared.KindSR, b.log)
	if err != nil {
		return nil, err
	}
	b.log.Warn("sr plugin restarted", "path", b.path, "pid", p.pid)
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
