package host_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/host"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRuntimeRunsAndStops(t *testing.T) {
	rt := loadAndBuild(t, goodFile, testRegistry(t), host.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	select {
	case <-rt.Ready():
	case err := <-done:
		t.Fatalf("run ended early: %v", err)
	}

	// The admin server answers with the live stream and its counters.
	base := "http://" + rt.AdminAddr.String()
	deadline := time.Now().Add(2 * time.Second)
	var status struct {
		Pipelines []host.PipelineStatus `json:"pipelines"`
	}
	for {
		resp, err := http.Get(base + "/api/streams")
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&status)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(status.Pipelines) == 1 && len(status.Pipelines[0].Streams) == 1 && status.Pipelines[0].Streams[0].Packets > 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream not listed with packets: %+v", status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s := status.Pipelines[0].Streams[0]; s.Name != "live/test" || s.Bytes != 4*s.Packets {
		t.Fatalf("stream status = %+v", s)
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`mediapipe_stage_packets_out_total{pipeline="cloud",position="1",stage="src"}`, "go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v after a clean stop", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("run did not stop within 2 s")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("stop took %s", d)
	}
}

// failingOpen fails to open, as a stage whose port is taken does.
type failingOpen struct{ sinkStage }

func (failingOpen) Open(context.Context) error {
	return errors.New("listen tcp 127.0.0.1:1: address already in use")
}

func TestRuntimeOpenFailureStopsEverything(t *testing.T) {
	reg := testRegistry(t)
	if err := reg.Add(core.Define(core.Spec{Name: "badsink", Summary: "fails to open", In: core.KindRTP},
		func(c *sinkConfig, env *core.Env) (core.Stage, error) { return failingOpen{}, nil })); err != nil {
		t.Fatal(err)
	}
	file := strings.Replace(goodFile, `use = "rtpsink"`, `use = "badsink"`, 1)
	rt := loadAndBuild(t, file, reg, host.Options{})
	err := rt.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), `pipeline "cloud" stage 4 (badsink): listen tcp`) {
		t.Fatalf("err = %v, want the open failure with its place", err)
	}
}

// A full queue drops data (counted) instead of blocking the source.
func TestFullQueueDropsAndCounts(t *testing.T) {
	reg := core.NewRegistry()
	block := make(chan struct{})
	_ = reg.Add(core.Define(core.Spec{Name: "src", Out: core.KindAV},
		func(c *srcConfig, env *core.Env) (core.Stage, error) { return &fakeSource{}, nil }))
	_ = reg.Add(core.Define(core.Spec{Name: "stuck", In: core.KindAV},
		func(c *sinkConfig, env *core.Env) (core.Stage, error) { return stuckSink{block}, nil }))
	file := "[[pipeline]]\nname = \"p\"\nqueue = 4\n[[pipeline.stage]]\nuse = \"src\"\nlisten = \"x\"\n[[pipeline.stage]]\nuse = \"stuck\"\nlisten = \"y\"\n"
	m := core.NewMetrics()
	rt := loadAndBuild(t, file, reg, host.Options{Metrics: m})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	drops := m.Stage("p", 2, "stuck").Drop("queue_full")
	deadline := time.Now().Add(3 * time.Second)
	for drops.Value() < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("queue_full drops = %v, want the source to keep going and count", drops.Value())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	close(block)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

type stuckSink struct{ block chan struct{} }

func (s stuckSink) Run(ctx context.Context, in <-chan *core.Packet, _ core.Output) error {
	<-s.block
	for p := range in {
		p.Release()
	}
	return nil
}

// loadAndBuild loads file with reg as mediapipe run does and builds it, or
// fails the test; the file's plugins (none here) stop when the test ends.
func loadAndBuild(t *testing.T, file string, reg *core.Registry, opts host.Options) *host.Runtime {
	t.Helper()
	f, err := host.Load("t.toml", ".", []byte(file), nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	rt, err := host.Build(f, opts)
	if err != nil {
		t.Fatal(err)
	}
	return rt
}
