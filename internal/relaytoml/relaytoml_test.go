package relaytoml

import (
	"slices"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe"
	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/host"
	_ "github.com/mediapipe/mediapipe/stages/all"
)

// TestRelay checks the text parses and builds the example's pipelines, with
// the extra stages where they were put.
func TestRelay(t *testing.T) {
	example := uses(t, mediapipe.ExamplePipeline)
	r := Relay{RTMP: "127.0.0.1:1935", RTX: "127.0.0.1:4242", UDP: "127.0.0.1:5222", HTTP: "127.0.0.1:7001"}
	if got := uses(t, []byte(r.Cloud()+r.Edge())); !slices.Equal(got, example) {
		t.Errorf("stages %q, want pipeline.example.toml's %q", got, example)
	}

	r.CachePackets, r.Latency = 64, 150*time.Millisecond
	r.BeforeReorder = "\n  [[pipeline.stage]]\n  use = \"netsim\"\n  drop = 0.1\n"
	got := uses(t, []byte(r.Cloud()+r.Edge()))
	want := slices.Insert(slices.Clone(example), slices.Index(example, "edge: rtp-reorder"), "edge: netsim")
	if !slices.Equal(got, want) {
		t.Errorf("stages %q, want %q", got, want)
	}
}

// uses lists "pipeline: stage" for every stage of a relay file.
func uses(t *testing.T, toml []byte) []string {
	t.Helper()
	f, err := host.Load("relay.toml", t.TempDir(), toml, nil, core.Default)
	if err != nil {
		t.Fatalf("%v\n%s", err, toml)
	}
	defer f.Close()
	var out []string
	for _, p := range f.Pipelines {
		for _, s := range p.Stages {
			out = append(out, p.Name+": "+s.Use)
		}
	}
	return out
}
