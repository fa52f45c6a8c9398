package bridge

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/host"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// Fake source and sink, so the pipeline test needs no network.

type srcConfig struct {
	Kind string `param:"kind" default:"flv" doc:"output kind"`
}

// tagSource emits one stream per name in streams with tags, then idles.
type tagSource struct {
	streams []string
	tags    [][]byte
}

func (s *tagSource) Run(ctx context.Context, _ <-chan *core.Packet, out core.Output) error {
	var open []*core.Stream
	for _, name := range s.streams {
		st := core.NewStream(name)
		open = append(open, st)
		out.Emit(core.NewEvent(core.EventStart, st))
	}
	for _, tag := range s.tags {
		for _, st := range open {
			p := core.NewPacket(len(tag))
			copy(p.Data, tag)
			p.Stream, p.Type = st, tag[0]
			out.Emit(p)
		}
	}
	<-ctx.Done()
	for _, st := range open {
		out.Emit(core.NewEvent(core.EventEnd, st))
	}
	return nil
}

type sinkConfig struct{}

type collectSink struct{ c *stagetest.Collector }

func (s *collectSink) Run(_ context.Context, in <-chan *core.Packet, out core.Output) error {
	for p := range in {
		s.c.Emit(p)
	}
	return nil
}

func testRegistry(src *tagSource, sink *stagetest.Collector) *core.Registry {
	reg := core.NewRegistry()
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	must(reg.Add(core.Define(core.Spec{Name: "test-source", Summary: "test", Out: core.KindFLV},
		func(cfg *srcConfig, env *core.Env) (core.Stage, error) { return src, nil })))
	must(reg.Add(core.Define(core.Spec{Name: "av-source", Summary: "test", Out: core.KindAV},
		func(cfg *srcConfig, env *core.Env) (core.Stage, error) { return src, nil })))
	must(reg.Add(core.Define(core.Spec{Name: "test-sink", Summary: "test", In: core.KindFLV},
		func(cfg *sinkConfig, env *core.Env) (core.Stage, error) { return &collectSink{sink}, nil })))
	reg.SetPluginLoader(Load)
	return reg
}

// pipelineFile is a pipeline file of one pipeline, name: source, then the
// stage whose table lines are middle, then test-sink.
func pipelineFile(name, source, middle string) string {
	return fmt.Sprintf(`
[[pipeline]]
name = %q
  [[pipeline.stage]]
  use = %q
  [[pipeline.stage]]
  %s
  [[pipeline.stage]]
  use = "test-sink"
`, name, source, middle)
}

// TestPipelineWithPluginStage runs stream-filter as plugin = "./stream-filter"
// in a pipeline file through core's loader and runtime.
func TestPipelineWithPluginStage(t *testing.T) {
	dir := t.TempDir()
	copyBin(t, dir, "stream-filter")
	var tags [][]byte
	var wantVideo [][]byte
	for i := range 50 {
		typ := []uint8{flv.TypeVideo, flv.TypeAudio}[i%2]
		tg := tag(typ, uint32(i*10), 300+i, i)
		tags = append(tags, tg)
		if typ == flv.TypeVideo {
			wantVideo = append(wantVideo, tg)
		}
	}
	src := &tagSource{streams: []string{"live/movie", "secret/feed"}, tags: tags}
	sink := stagetest.NewCollector()
	reg := testRegistry(src, sink)
	file := pipelineFile("edge", "test-source", `plugin = "./stream-filter"
  drop_audio = true
  allow = ["live/*"]`)
	r := testrun.Start(t, "edge.toml", file, nil, testrun.Dir(dir), testrun.Registry(reg))
	// Wait until everything is through before the plugin is stopped.
	sink.WaitData(len(wantVideo), 10*time.Second)
	var pid int
	for _, p := range r.RT.Pipelines {
		for _, rs := range p.Stages {
			if st, ok := rs.Stage.(*Stage); ok {
				pid = st.PID()
			}
		}
	}
	if !alive(pid) {
		t.Fatalf("no plugin process (pid %d)", pid)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	got := sink.Data()
	if len(got) != len(wantVideo) {
		t.Fatalf("sink got %d data packets, want %d (video of live/movie only)", len(got), len(wantVideo))
	}
	for i, p := range got {
		if p.Stream.Name != "live/movie" || !bytes.Equal(p.Data, wantVideo[i]) {
			t.Fatalf("packet %d: %s %d bytes, not the video sent", i, p.Stream.Name, len(p.Data))
		}
	}
	var events []string
	for _, p := range sink.Packets() {
		if p.Event != core.EventData {
			events = append(events, p.Event.String()+" "+p.Stream.Name)
		}
	}
	if strings.Join(events, ",") != "start live/movie,end live/movie" {
		t.Errorf("events at the sink: %q", events)
	}
	waitGone(t, pid)
}

func TestPipelineKindMismatchNamesPlugin(t *testing.T) {
	dir := t.TempDir()
	copyBin(t, dir, "stream-filter")
	reg := testRegistry(&tagSource{}, stagetest.NewCollector())
	cases := []struct {
		name, file, want string
	}{
		{"kinds", pipelineFile("p", "av-source", `plugin = "./stream-filter"`),
			"takes flv input but stage 1 (av-source) outputs av"},
		{"bad param", pipelineFile("p", "test-source", `plugin = "./stream-filter"
  drop_audio = "yes"`), "drop_audio:"},
		{"plugin's own validation", pipelineFile("p", "test-source", `plugin = "./stream-filter"
  allow = ["live/*", "["]`), "allow: bad glob"},
		{"missing", pipelineFile("p", "test-source", `plugin = "./nothing-here"`),
			"nothing-here: no such file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := host.Load("p.toml", dir, []byte(c.file), nil, reg)
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, c.want) {
				t.Errorf("error = %q, want one line with %q", msg, c.want)
			}
			if c.name == "kinds" && !strings.Contains(msg, filepath.Join(dir, "stream-filter")) {
				t.Errorf("error %q does not name the plugin path", msg)
			}
		})
	}
	noneLive(t, "validation")
}
