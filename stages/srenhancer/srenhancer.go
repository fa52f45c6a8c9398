// Package srenhancer is the sr-enhancer stage: H.264 in FLV is decoded and
// re-encoded scale× larger by ffmpeg, every keyframe's picture coming from an SR backend.
package srenhancer

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/sr"
	"github.com/mediapipe/mediapipe/stages/srenhancer/backend"
)

// sample is an example [[pipeline.stage]] block for this stage, carried in
// its spec; stages/all checks that it validates.
//
//go:embed sample.toml
var sample string

// Config is sr-enhancer's parameters.
type Config struct {
	Backend        string        `param:"backend" default:"builtin" enum:"builtin,http,plugin" doc:"where keyframes are super-resolved: builtin (pure-Go Catmull-Rom), http (a basicKVSR-protocol service at url) or plugin (an SR backend plugin at path)"`
	URL            string        `param:"url" doc:"http backend: service URL; each keyframe is POSTed to URL?w=W&h=H as raw RGB24 and the reply is raw BGR24 at scale×W by scale×H"`
	Path           string        `param:"path" doc:"plugin backend: the plugin executable (relative to the pipeline file's directory)"`
	Scale          int           `param:"scale" default:"4" min:"2" max:"4" doc:"output width and height are scale× the input's (2, 3 or 4)"`
	Timeout        time.Duration `param:"timeout" default:"1s" min:"0.001" doc:"longest wait for the backend per keyframe; for http and plugin the wait also ends 0.8 GOP (the stream's keyframe interval) after the keyframe arrived, so the stage adds at most one GOP of latency; a later answer is counted (backend_failure, or backend_too_slow past the budget) and the keyframe is upscaled conventionally"`
	FailureBackoff time.Duration `param:"failure_backoff" default:"10s" min:"0" doc:"after failures_before_backoff failures in a row the backend is left alone this long"`
	MaxFailures    int           `param:"failures_before_backoff" default:"3" min:"1" doc:"consecutive backend failures that start a back-off"`
	FFmpeg         string        `param:"ffmpeg" default:"ffmpeg" doc:"the ffmpeg program (name looked up on PATH, or a path)"`
	Preset         string        `param:"preset" default:"veryfast" enum:"ultrafast,superfast,veryfast,faster,fast,medium,slow" doc:"x264 preset of the re-encode: slower is sharper per bit and costs CPU"`
	CRF            int           `param:"crf" default:"23" min:"0" max:"51" doc:"x264 constant rate factor of the re-encode (lower: better and bigger)"`
	QueueFrames    int           `param:"queue_frames" default:"90" min:"8" max:"10000" doc:"video frames a stream may have waiting for ffmpeg; beyond it frames are shed (counted) until the next keyframe"`
}

// Validate checks the rules that span several fields.
func (c *Config) Validate() error {
	var errs []error
	switch c.Backend {
	case "http":
		if c.URL == "" {
			errs = append(errs, errors.New(`url: required when backend = "http"`))
		} else if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("url: %q is not an http:// or https:// URL", c.URL))
		}
	case "plugin":
		if c.Path == "" {
			errs = append(errs, errors.New(`path: required when backend = "plugin"`))
		}
	}
	if c.Scale != 2 && c.Scale != 3 && c.Scale != 4 {
		errs = append(errs, fmt.Errorf("scale: %d is not 2, 3 or 4", c.Scale))
	}
	return errors.Join(errs...)
}

func init() {
	core.Register(core.Spec{
		Name:    "sr-enhancer",
		Summary: "super-resolves H.264 keyframes through an SR backend (builtin, http, plugin); other frames upscaled conventionally; audio untouched",
		In:      core.KindFLV,
		Out:     core.KindFLV,
		Sample:  sample,
		Mutates: true, // onMetaData's width and height are patched in place
	}, newStage)
}

// ValidateIn implements core.DirValidator: it starts a plugin backend once
// and stops it, so that `mediapipe validate` catches a missing program, one
// that is no plugin, or a stage plugin given as an SR backend, with the
// bridge's one-line errors.
func (c *Config) ValidateIn(dir string) error {
	if c.Backend != "plugin" {
		return nil
	}
	path := core.InDir(dir, c.Path)
	b, err := sr.OpenPlugin(path)
	if err != nil {
		return fmt.Errorf("path: %w", err)
	}
	if err := b.Close(); err != nil {
		return fmt.Errorf("path: %s: stopping it: %w", path, err)
	}
	return nil
}

type stage struct {
	cfg    Config
	env    *core.Env
	ffmpeg string

	mu      sync.Mutex
	backend sr.Backend
	guard   *guard

	drops struct {
		queueFull, waitKey, noHeader, ffmpeg, lost *core.DropCounter
	}
	stall    time.Duration // no output this long while frames go in: ffmpeg is hung
	restarts prometheus.Counter
	streams  prometheus.Gauge
}

// newStage checks what can be checked without starting anything: ffmpeg is
// on PATH, the HTTP URL parses, the plugin file exists.
func newStage(cfg *Config, env *core.Env) (core.Stage, error) {
	s := &stage{cfg: *cfg, env: env, stall: drainTimeout + cfg.Timeout}
	var err error
	if s.ffmpeg, err = exec.LookPath(cfg.FFmpeg); err != nil {
		return nil, fmt.Errorf("ffmpeg: %w (sr-enhancer needs ffmpeg with libx264)", err)
	}
	switch cfg.Backend {
	case "builtin":
		s.backend = backend.NewBuiltin()
	case "http":
		if s.backend, err = backend.NewHTTP(cfg.URL); err != nil {
			return nil, fmt.Errorf("backend http: %w", err)
		}
	case "plugin":
		s.cfg.Path = env.Path(s.cfg.Path)
		if _, err := os.Stat(s.cfg.Path); err != nil {
			return nil, fmt.Errorf("backend plugin: %w", err)
		}
	}
	m := env.Metrics
	s.drops.queueFull = m.Drop("queue_full")
	s.drops.waitKey = m.Drop("wait_keyframe")
	s.drops.noHeader = m.Drop("no_sequence_header")
	s.drops.ffmpeg = m.Drop("ffmpeg_failure")
	s.drops.lost = m.Drop("frame_lost")
	s.restarts = m.Counter("ffmpeg_start")
	s.streams = m.Gauge("streams")
	s.guard = newGuard(env, cfg.Timeout, cfg.FailureBackoff, cfg.MaxFailures)
	return s, nil
}

// Open starts a plugin backend, so a missing or broken plugin stops the
// pipeline before it runs.
func (s *stage) Open(ctx context.Context) error {
	return s.openBackend()
}

func (s *stage) openBackend() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.backend != nil {
		return nil
	}
	b, err := sr.OpenPlugin(s.cfg.Path)
	if err != nil {
		return fmt.Errorf("backend plugin: %s: %w", s.cfg.Path, err)
	}
	// A plugin backend counts its restarts in this stage's metrics and logs
	// under its name; asked through an interface so no bridge import is needed.
	if i, ok := b.(interface {
		Instrument(*core.StageMetrics, *slog.Logger)
	}); ok {
		i.Instrument(s.env.Metrics, s.env.Log)
	}
	s.backend = b
	s.env.Log.Info("sr backend plugin started", "path", s.cfg.Path)
	return nil
}

func (s *stage) closeBackend() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.backend != nil {
		if err := s.backend.Close(); err != nil {
			s.env.Log.Warn("sr backend close", "err", err)
		}
		s.backend = nil
	}
}

// Run routes each stream's tags: video into the stream's ffmpeg pipeline,
// everything else held just long enough to stay interleaved with the video
// that comes out late.
func (s *stage) Run(ctx context.Context, in <-chan *core.Packet, out core.Output) error {
	if err := s.openBackend(); err != nil {
		for p := range in { // keep the pipeline draining; nothing can be enhanced
			p.Release()
		}
		return err
	}
	defer s.closeBackend()
	s.guard.setBackend(s.backend)
	ctx, cancel := context.WithCancel(ctx) // cancels backend calls still pending when Run ends
	defer cancel()
	streams := map[*core.Stream]*streamState{}
	var ending sync.WaitGroup
	get := func(st *core.Stream) *streamState {
		ss := streams[st]
		if ss == nil {
			ss = newStreamState(ctx, s, st, out)
			streams[st] = ss
			s.streams.Set(float64(len(streams)))
		}
		return ss
	}
	for p := range in {
		switch p.Event {
		case core.EventStart:
			get(p.Stream)
			out.Emit(p)
		case core.EventEnd:
			ss := streams[p.Stream]
			delete(streams, p.Stream)
			s.streams.Set(float64(len(streams)))
			if ss == nil {
				out.Emit(p)
				continue
			}
			ending.Add(1)
			go func() { // draining ffmpeg takes a moment: other streams go on meanwhile
				defer ending.Done()
				ss.finish(p)
			}()
		default:
			if p.Stream == nil {
				p.Release()
				continue
			}
			get(p.Stream).handle(p)
		}
	}
	for _, ss := range streams {
		ending.Add(1)
		go func() {
			defer ending.Done()
			ss.finish(nil)
		}()
	}
	ending.Wait()
	s.streams.Set(0)
	return nil
}
