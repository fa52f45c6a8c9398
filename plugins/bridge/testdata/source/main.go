// Command source is a source stage plugin for the bridge's tests: it opens
// one stream, emits count tags, and ends the stream when stopped.
package main

import (
	"context"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/plugins/sdk"
)

type config struct {
	Name  string `param:"name" default:"test/source" doc:"stream name"`
	Count int    `param:"count" default:"5" min:"0" doc:"tags to emit"`
}

type source struct{ cfg *config }

func (s *source) Run(ctx context.Context, _ <-chan *core.Packet, out core.Output) error {
	st := core.NewStream(s.cfg.Name)
	st.SetInit(&core.InitTags{Video: flv.AppendTag(nil, flv.TypeVideo, 0, []byte{0x17, 0, 0, 0, 0, 1})})
	out.Emit(core.NewEvent(core.EventStart, st))
	for i := range s.cfg.Count {
		tag := flv.AppendTag(nil, flv.TypeVideo, uint32(i*40), []byte{0x27, 1, 0, 0, 0, byte(i)})
		p := core.NewPacket(len(tag))
		copy(p.Data, tag)
		p.Stream, p.Type, p.Timestamp = st, flv.TypeVideo, uint32(i*40)
		out.Emit(p)
	}
	<-ctx.Done()
	out.Emit(core.NewEvent(core.EventEnd, st))
	return nil
}

func main() {
	sdk.ServeStage(core.Define(core.Spec{Name: "test-source", Summary: "emits a few tags", Out: core.KindFLV},
		func(cfg *config, _ *core.Env) (core.Stage, error) { return &source{cfg}, nil }))
}
