package stagetest

import (
	"context"
	"runtime"
	"testing"

	"github.com/mediapipe/mediapipe/core"
)

type sampleConfig struct {
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
	core.Register(core.Spec{Name: "stagetest-sample", Summary: "test", In: core.KindFLV},
		func(*sampleConfig, *core.Env) (core.Stage, error) { return nopStage{}, nil })
}

// fatalRecorder notes a Fatal instead of failing the real test.
type fatalRecorder struct {
	testing.TB
	failed bool
}

func (f *fatalRecorder) Helper()               {}
func (f *fatalRecorder) Fatal(...any)          { f.failed = true; runtime.Goexit() }
func (f *fatalRecorder) Fatalf(string, ...any) { f.failed = true; runtime.Goexit() }

func TestCheckSample(t *testing.T) {
	block := "[[pipeline.stage]]\nuse = \"stagetest-sample\"\n"
	cases := []struct {
		name, sample string
		fails        bool
	}{
		{"good", block + "size = 3\n", false},
		{"defaults", block, false},
		{"bad value", block + "size = 10\n", true},
		{"unknown param", block + "colour = \"red\"\n", true},
		{"other stage", "[[pipeline.stage]]\nuse = \"netsim\"\n", true},
		{"two blocks", block + block, true},
		{"not toml", "[[pipeline.stage]\n", true},
	}
	for _, c := range cases {
		rec := &fatalRecorder{TB: t}
		done := make(chan struct{})
		go func() { defer close(done); CheckSample(rec, []byte(c.sample), "stagetest-sample") }()
		<-done
		if rec.failed != c.fails {
			t.Errorf("%s: failed = %v, want %v", c.name, rec.failed, c.fails)
		}
	}
	if st := Build(t, "stagetest-sample", map[string]any{"size": int64(2)}, nil); st == nil {
		t.Fatal("Build returned no stage")
	}
}
