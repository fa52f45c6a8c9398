package testrun

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
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
