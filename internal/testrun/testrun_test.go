package testrun

import (
	"context"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/internal/metricread"
	"github.com/mediapipe/mediapipe/internal/relaytoml"
)

type noConfig struct{}

// idle is a source that runs until cancelled.
type idle struct{ stopped chan struct{} }

func (s *idle) Run(ctx context.Context, _ <-chan *core.Packet, _ core.Output) error {
	<-ctx.Done()
	close(s.stopped)
	return nil
}

type sink struct{}

func (sink) Run(_ context.Context, in <-chan *core.Packet, _ core.Output) error {
	for p := range in {
		p.Release()
	}
	return nil
}

func TestStartAndStop(t *testing.T) {
	src := &idle{stopped: make(chan struct{})}
	reg := core.NewRegistry()
	if err := reg.Add(core.Define(core.Spec{Name: "idle-source", Summary: "test", Out: core.KindFLV},
		func(*noConfig, *core.Env) (core.Stage, error) { return src, nil })); err != nil {
		t.Fatal(err)
	}
	if err := reg.Add(core.Define(core.Spec{Name: "null-sink", Summary: "test", In: core.KindFLV},
		func(*noConfig, *core.Env) (core.Stage, error) { return sink{}, nil })); err != nil {
		t.Fatal(err)
	}
	r := Start(t, "idle.toml", `
[[pipeline]]
name = "p"
  [[pipeline.stage]]
  use = "idle-source"
  [[pipeline.stage]]
  use = "null-sink"
`, nil, Registry(reg), ReadyWithin(5*time.Second))
	if len(r.RT.Pipelines) != 1 {
		t.Fatalf("%d pipelines", len(r.RT.Pipelines))
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-src.stopped:
	default:
		t.Fatal("Stop returned before the source stopped")
	}
	if err := r.Stop(); err != nil { // again, as the cleanup will
		t.Fatal(err)
	}
}

func TestFreePortsBind(t *testing.T) {
	l, err := net.Listen("tcp", FreeTCP(t))
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	c, err := net.ListenPacket("udp", FreeUDP(t))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestMain(m *testing.M) {
	code := m.Run()
	RemoveBinary()
	os.Exit(code)
}

// TestProcess runs the real binary on a cloud pipeline: ready once its
// listeners are bound, metrics scraped, SIGTERM ends it with status 0, and a
// process that dies by itself is reported by Stop.
func TestProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the mediapipe binary")
	}
	toml := relaytoml.Relay{RTMP: FreeTCP(t), RTX: FreeUDP(t), UDP: FreeUDP(t)}.Cloud()
	p := StartProcess(t, "cloud.toml", toml, nil)
	if !p.Alive() {
		t.Fatal("not alive after start")
	}
	if n := p.Sum(t, "mediapipe_stage_packets_in_total", map[string]string{"stage": "flv-tagger"}); n != 0 {
		t.Errorf("flv-tagger took %v packets with no publisher", n)
	}
	if n := p.Sum(t, "go_goroutines", nil); n <= 0 {
		t.Errorf("go_goroutines = %v: the scrape read nothing", n)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if p.Alive() {
		t.Fatal("alive after Stop")
	}

	q := StartProcess(t, "cloud2.toml", relaytoml.Relay{RTMP: FreeTCP(t), RTX: FreeUDP(t), UDP: FreeUDP(t)}.Cloud(), nil)
	if err := syscall.Kill(q.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-q.Exited():
	case <-time.After(5 * time.Second):
		t.Fatal("SIGKILL did not end the process")
	}
	if q.Alive() {
		t.Fatal("alive after it exited")
	}
	if err := q.Stop(); err == nil || !strings.Contains(err.Error(), "by itself") {
		t.Fatalf("Stop of a killed process = %v, want an error saying it exited by itself", err)
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP mediapipe_stage_drops_total Packets dropped.
# TYPE mediapipe_stage_drops_total counter
mediapipe_stage_drops_total{pipeline="edge",position="1",reason="junk",stage="udp-source"} 12
mediapipe_stage_drops_total{pipeline="edge",position="4",reason="slow_viewer",stage="httpflv-sink"} 1
mediapipe_stage_gauge{name="odd \"q\", x",pipeline="edge",position="4",stage="httpflv-sink"} 2
go_goroutines 42
`
	s, err := ParseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		family string
		labels map[string]string
		want   float64
	}{
		{"mediapipe_stage_drops_total", nil, 13},
		{"mediapipe_stage_drops_total", map[string]string{"stage": "udp-source"}, 12},
		{"mediapipe_stage_drops_total", map[string]string{"reason": "slow_viewer", "pipeline": "edge"}, 1},
		{"mediapipe_stage_drops_total", map[string]string{"reason": "nope"}, 0},
		{"mediapipe_stage_gauge", map[string]string{"name": `odd "q", x`}, 2},
		{"go_goroutines", nil, 42},
	} {
		if got := metricread.SumFamilies(s, c.family, c.labels); got != c.want {
			t.Errorf("SumFamilies(%s, %v) = %v, want %v", c.family, c.labels, got, c.want)
		}
	}
}
