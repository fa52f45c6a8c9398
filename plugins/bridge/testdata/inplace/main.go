// Command inplace is a stage plugin for the bridge's tests that makes the
// mistake the SDK warns about: it renames the streams it is given by
// setting Stream.Name, which mediapipe must report, not ignore.
package main

import (
	"context"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/plugins/sdk"
)

type config struct{}

type inplace struct{}

func (inplace) Run(_ context.Context, in <-chan *core.Packet, out core.Output) error {
	for p := range in {
		if p.Event == core.EventStart {
			p.Stream.Name = "renamed/" + p.Stream.Name
		}
		out.Emit(p)
	}
	return nil
}

func main() {
	sdk.ServeStage(core.Define(core.Spec{Name: "test-inplace", Summary: "renames in place", In: core.KindFLV, Out: core.KindFLV},
		func(*config, *core.Env) (core.Stage, error) { return inplace{}, nil }))
}
