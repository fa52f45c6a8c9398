// Package filter is the logic of the stream-filter example plugin, apart
// from main so it can also run in-process (tests, benchmarks).
package filter

import (
	"context"
	"fmt"
	"path"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
)

// Spec declares the stage; the plugin describes it to mediapipe.
var Spec = core.Spec{
	Name:    "stream-filter",
	Summary: "drops audio tags and streams whose names match none of the allowed globs",
	In:      core.KindFLV,
	Out:     core.KindFLV,
}

// Config is the stage's parameters.
type Config struct {
	DropAudio bool     `param:"drop_audio" default:"false" doc:"remove audio tags (FLV tag type 8)"`
	Allow     []string `param:"allow" doc:"stream names (app/key) to pass, as path.Match globs (none given: all); other streams never pass, start and end included"`
}

// Validate checks the globs once, at build time.
func (c *Config) Validate() error {
	for _, g := range c.Allow {
		if _, err := path.Match(g, ""); err != nil {
			return fmt.Errorf("allow: bad glob %q", g)
		}
	}
	return nil
}

type stage struct {
	cfg     *Config
	dropped *core.DropCounter
	denied  *core.DropCounter
}

// New builds the stage.
func New(cfg *Config, env *core.Env) (core.Stage, error) {
	return &stage{cfg: cfg, dropped: env.Metrics.Drop("audio"), denied: env.Metrics.Drop("not_allowed")}, nil
}

func (s *stage) allowed(name string) bool {
	if len(s.cfg.Allow) == 0 {
		return true
	}
	for _, g := range s.cfg.Allow {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// Run passes what is allowed; a stream's verdict is taken once, at its start.
func (s *stage) Run(_ context.Context, in <-chan *core.Packet, out core.Output) error {
	pass := map[*core.Stream]bool{}
	for p := range in {
		ok, known := pass[p.Stream]
		switch p.Event {
		case core.EventStart:
			ok = s.allowed(p.Stream.Name)
			pass[p.Stream] = ok
		case core.EventEnd:
			delete(pass, p.Stream)
		default:
			if !known {
				ok = s.allowed(p.Stream.Name)
			}
		}
		switch {
		case !ok:
			if p.Event == core.EventData {
				s.denied.Inc()
			}
			p.Release()
		case p.Event == core.EventData && s.cfg.DropAudio && p.Type == flv.TypeAudio:
			s.dropped.Inc()
			p.Release()
		default:
			if s.cfg.DropAudio && p.Event != core.EventEnd {
				stripAudioInit(p.Stream)
			}
			out.Emit(p)
		}
	}
	return nil
}

// stripAudioInit removes the AAC sequence header from the stream's init
// tags, so a player joining later is not told about audio that never comes.
func stripAudioInit(st *core.Stream) {
	if t := st.Init(); t != nil && t.Audio != nil {
		st.SetInit(&core.InitTags{Metadata: t.Metadata, Video: t.Video})
	}
}
