package relaytoml

import (
	"fmt"
	"slices"
	"strings"
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
	// The example's HLS branch (pipeline edge-hls) is not the relay's.
	example := slices.DeleteFunc(uses(t, mediapipe.ExamplePipeline), func(u string) bool { return strings.HasPrefix(u, "edge-hls: ") })
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

// Destinations replace UDP as udp-sink's list, and the file still loads.
func TestRelayDestinations(t *testing.T) {
	r := Relay{RTMP: "127.0.0.1:1935", RTX: "127.0.0.1:4242", UDP: "127.0.0.1:5222",
		Destinations: []string{"127.0.0.1:5223", "[::1]:5224"}}
	f, err := host.Load("cloud.toml", t.TempDir(), []byte(r.Cloud()), nil, core.Default)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sink := f.Pipelines[0].Stages[4]
	if got := fmt.Sprint(sink.Params["destinations"]); got != "[127.0.0.1:5223 [::1]:5224]" {
		t.Errorf("udp-sink destinations %s", got)
	}
}

// TotalRate becomes quic-retransmit's total_rate (the bench's --total-rate).
func TestRelayTotalRate(t *testing.T) {
	r := Relay{RTMP: "127.0.0.1:1935", RTX: "127.0.0.1:4242", UDP: "127.0.0.1:5222", TotalRate: 400000}
	f, err := host.Load("cloud.toml", t.TempDir(), []byte(r.Cloud()), nil, core.Default)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := fmt.Sprint(f.Pipelines[0].Stages[3].Params["total_rate"]); got != "400000" {
		t.Errorf("quic-retransmit total_rate %s, want 400000", got)
	}
}

// ReorderID and ReassemblerID become those stages' ids, for branches.
func TestRelayIDs(t *testing.T) {
	r := Relay{RTX: "127.0.0.1:4242", UDP: "127.0.0.1:5222", HTTP: "127.0.0.1:7001", ReorderID: "ordered", ReassemblerID: "repaired"}
	f, err := host.Load("edge.toml", t.TempDir(), []byte(r.Edge()), nil, core.Default)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ids []string
	for _, sc := range f.Pipelines[0].Stages {
		ids = append(ids, sc.ID)
	}
	if want := []string{"", "ordered", "repaired", ""}; !slices.Equal(ids, want) {
		t.Errorf("stage ids %q, want %q", ids, want)
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
