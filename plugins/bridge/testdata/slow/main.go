// Command slow is a stage plugin for the bridge's tests: it passes every
// packet on, taking delay over each data packet, so packets pile up inside
// it.
package main

import (
	"context"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/plugins/sdk"
)

type config struct {
	Delay time.Duration `param:"delay" default:"5ms" min:"0" doc:"time taken over each data packet"`
}

type slow struct{ cfg *config }

func (s *slow) Run(_ context.Context, in <-chan *core.Packet, out core.Output) error {
	for p := range in {
		if p.Event == core.EventData {
			time.Sleep(s.cfg.Delay)
		}
		out.Emit(p)
	}
	return nil
}

func main() {
	sdk.ServeStage(core.Define(core.Spec{Name: "slow", Summary: "passes packets on, slowly", In: core.KindFLV, Out: core.KindFLV},
		func(cfg *config, _ *core.Env) (core.Stage, error) { return &slow{cfg}, nil }))
}
