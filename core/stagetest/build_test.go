package stagetest

import (
	"context"
	"testing"

	"github.com/mediapipe/mediapipe/core"
)

type buildConfig struct {
	Size int `param:"size" default:"1" min:"1" max:"9" doc:"a number"`
}

type nopStage struct{}

func (nopStage) Run(_ context.Context, in <-chan *core.Packet, _ core.Output) error {
	for p := range in {
		p.Release()
	}
	return nil
}

func init() {
	core.Register(core.Spec{Name: "stagetest-build", Summary: "test", In: core.KindFLV},
		func(*buildConfig, *core.Env) (core.Stage, error) { return nopStage{}, nil })
}

func TestBuild(t *testing.T) {
	if st := Build(t, "stagetest-build", map[string]any{"size": int64(2)}, nil); st == nil {
		t.Fatal("Build returned no stage")
	}
}
