// Package rename is the logic of the stream-rename example plugin, apart
// from main so it can also run in-process (tests).
package rename

import (
	"context"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/plugins/sdk"
)

// Spec declares the stage; the plugin describes it to mediapipe.
var Spec = core.Spec{
	Name:    "stream-rename",
	Summary: "serves streams under other names (app/key → app/key); the rest pass unchanged",
	In:      core.KindFLV,
	Out:     core.KindFLV,
	Sample: `[[pipeline.stage]]
plugin = "./stream-rename"
rename = {"live/cam1" = "public/lobby"}
`,
}

// Config is the stage's parameters.
type Config struct {
	Rename map[string]string `param:"rename" required:"true" doc:"old stream name → new one, as a table: {\"live/cam1\" = \"public/lobby\"}"`
}

type stage struct{ cfg *Config }

// New builds the stage.
func New(cfg *Config, _ *core.Env) (core.Stage, error) { return &stage{cfg: cfg}, nil }

// Run renames through sdk.Rename: Stream.Name cannot be set in place.
func (s *stage) Run(_ context.Context, in <-chan *core.Packet, out core.Output) error {
	return sdk.Rename(in, out, func(name string) string { return s.cfg.Rename[name] })
}
