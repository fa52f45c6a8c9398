package host_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/host"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// seqSource emits stream "live/a" (start, n numbered data packets, end)
// and then stream "live/b" (start, 3 packets, end), as fast as it can,
// then waits to be stopped.
type seqSource struct{ n int }

func (s seqSource) Run(ctx context.Context, _ <-chan *core.Packet, out core.Output) error {
	seq := 0
	for _, st := range []struct {
		name string
		n    int
	}{{"live/a", s.n}, {"live/b", 3}} {
		stream := core.NewStream(st.name)
		out.Emit(core.NewEvent(core.EventStart, stream))
		for range st.n {
			p := core.NewPacket(200)
			for i := range p.Data {
				p.Data[i] = byte(seq + i)
			}
			binary.BigEndian.PutUint32(p.Data, uint32(seq))
			p.Stream = stream
			out.Emit(p)
			seq++
		}
		out.Emit(core.NewEvent(core.EventEnd, stream))
	}
	<-ctx.Done()
	return nil
}

// recorder keeps, per sink (named by its listen parameter), what reached it.
type recorder struct {
	mu   sync.Mutex
	seen map[string][]string
}

func (r *recorder) add(sink string, p *core.Packet) {
	entry := fmt.Sprintf("%s %s", p.Event, p.Stream.Name)
	if p.Event == core.EventData {
		entry = fmt.Sprintf("%s %x", entry, p.Data)
	}
	r.mu.Lock()
	r.seen[sink] = append(r.seen[sink], entry)
	r.mu.Unlock()
}

func (r *recorder) get(sink string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen[sink])
}

// ended says whether sink has seen both streams end.
func (r *recorder) ended(sink string) bool {
	got := r.get(sink)
	return len(got) > 0 && got[len(got)-1] == "end live/b"
}

// recSink records what it receives; stall, if not nil, holds it before
// it reads anything.
type recSink struct {
	rec   *recorder
	name  string
	stall chan struct{}
}

func (s recSink) Run(ctx context.Context, in <-chan *core.Packet, _ core.Output) error {
	if s.stall != nil {
		<-s.stall
	}
	for p := range in {
		s.rec.add(s.name, p)
		p.Release()
	}
	return nil
}

// branchRuntime registers seq (a seqSource of n packets), pass (av→flv),
// rec (a recording flv sink) and stall (rec, held until stall is closed).
func branchRuntime(t *testing.T, file string, n int, rec *recorder, stall chan struct{}, m *core.Metrics) *host.Runtime {
	t.Helper()
	reg := core.NewRegistry()
	for _, err := range []error{
		reg.Add(core.Define(core.Spec{Name: "seq", Out: core.KindAV},
			func(c *srcConfig, env *core.Env) (core.Stage, error) { return seqSource{n}, nil })),
		reg.Add(core.Define(core.Spec{Name: "pass", In: core.KindAV, Out: core.KindFLV},
			func(c *midConfig, env *core.Env) (core.Stage, error) { return passStage{}, nil })),
		reg.Add(core.Define(core.Spec{Name: "rec", In: core.KindFLV},
			func(c *sinkConfig, env *core.Env) (core.Stage, error) { return recSink{rec, c.Listen, nil}, nil })),
		reg.Add(core.Define(core.Spec{Name: "scribble", In: core.KindFLV, Out: core.KindFLV, Mutates: true},
			func(c *midConfig, env *core.Env) (core.Stage, error) { return scribbleStage{}, nil })),
		reg.Add(core.Define(core.Spec{Name: "stall", In: core.KindFLV},
			func(c *sinkConfig, env *core.Env) (core.Stage, error) { return recSink{rec, c.Listen, stall}, nil })),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return loadAndBuild(t, file, reg, host.Options{Metrics: m})
}

// branchFile is pipeline "main" (seq → pass, id "mid" → rec "main") and
// branches b1 (sink1 "b1", queue q1) and b2 (rec "b2") from "mid".
func branchFile(sink1 string, q1 int) string {
	return `
[[pipeline]]
name = "main"
queue = 8192
  [[pipeline.stage]]
  use = "seq"
  listen = "x"
  [[pipeline.stage]]
  use = "pass"
  id = "mid"
  [[pipeline.stage]]
  use = "rec"
  listen = "main"

[[pipeline]]
name = "b1"
from = "mid"
queue = ` + fmt.Sprint(q1) + `
  [[pipeline.stage]]
  use = "` + sink1 + `"
  listen = "b1"

[[pipeline]]
name = "b2"
from = "mid"
queue = 8192
  [[pipeline.stage]]
  use = "rec"
  listen = "b2"
`
}

// expected is what seqSource(n) emits, as a recorder writes it.
func expected(n int) []string {
	rec := &recorder{seen: map[string][]string{}}
	out := recOutput{rec}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = seqSource{n}.Run(ctx, nil, out)
	return rec.get("want")
}

type recOutput struct{ rec *recorder }

func (o recOutput) Emit(p *core.Packet) { o.rec.add("want", p); p.Release() }

// runUntil runs rt until cond holds (or fails the test after 10 s), then
// stops it and checks the stop is clean.
func runUntil(t *testing.T, rt *host.Runtime, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	testrun.Eventually(t, 10*time.Second, what, cond)
	cancel()
	if err := testrun.Within(t, done, 5*time.Second, "run to stop"); err != nil {
		t.Fatalf("run: %v", err)
	}
}

// Two branches off one stage receive exactly what that stage's own next
// stage receives, events included.
func TestBranchesReceiveWhatTheMainChainDoes(t *testing.T) {
	const n = 2000
	rec := &recorder{seen: map[string][]string{}}
	rt := branchRuntime(t, branchFile("rec", 8192), n, rec, nil, core.NewMetrics())
	runUntil(t, rt, "main and both branches to see both streams end", func() bool {
		return rec.ended("main") && rec.ended("b1") && rec.ended("b2")
	})
	want := expected(n)
	for _, sink := range []string{"main", "b1", "b2"} {
		if got := rec.get(sink); !slices.Equal(got, want) {
			t.Errorf("%s received %d entries, want the %d the source emitted, in order", sink, len(got), len(want))
		}
	}
}

// A stalled branch costs the main chain and the other branch nothing: its
// data is dropped and counted, its events still arrive, and a stream that
// starts and ends while it is stalled never reaches it at all.
func TestStalledBranchCostsOthersNothing(t *testing.T) {
	const n, q = 2000, 8
	rec := &recorder{seen: map[string][]string{}}
	stall := make(chan struct{})
	m := core.NewMetrics()
	rt := branchRuntime(t, branchFile("stall", q), n, rec, stall, m)
	full := m.Stage("b1", 1, "stall").Drop("branch_full")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()

	want := expected(n)
	testrun.Eventually(t, 10*time.Second, "main and b2 to see both streams end while b1 is stalled", func() bool {
		return rec.ended("main") && rec.ended("b2")
	})
	for _, sink := range []string{"main", "b2"} {
		if got := rec.get(sink); !slices.Equal(got, want) {
			t.Errorf("%s received %d entries, want all %d the source emitted", sink, len(got), len(want))
		}
	}
	// b1's queue took the start and q-1 packets; the rest of a's packets
	// and all of b's were dropped; a's end waits for b1, b's start and end
	// cancelled out.
	if got, wantDrops := full.Value(), float64(n-(q-1)+3); got != wantDrops {
		t.Errorf("branch_full = %v, want %v", got, wantDrops)
	}
	close(stall)
	wantB1 := append(slices.Clone(want[:q]), "end live/a")
	testrun.Eventually(t, 5*time.Second, "b1 to see a's end once unstalled", func() bool {
		got := rec.get("b1")
		return len(got) > 0 && got[len(got)-1] == "end live/a"
	})
	cancel()
	if err := testrun.Within(t, done, 5*time.Second, "run to stop"); err != nil {
		t.Fatalf("run: %v", err)
	}
	if got := rec.get("b1"); !slices.Equal(got, wantB1) {
		t.Errorf("stalled branch received %q…, want the start, %d packets and the end", got[:min(len(got), 3)], q-1)
	}
	if drops := m.Stage("main", 3, "rec").Drop("queue_full").Value(); drops != 0 {
		t.Errorf("main chain dropped %v", drops)
	}
}

// scribbleStage overwrites the first byte of every data packet in place, as
// a stage that declares Mutates may.
type scribbleStage struct{}

func (scribbleStage) Run(ctx context.Context, in <-chan *core.Packet, out core.Output) error {
	for p := range in {
		if p.Event == core.EventData {
			p.Data[0] = 0xff
		}
		out.Emit(p)
	}
	return nil
}

// A stage that writes into packet bytes, in a branch or after the tapped
// stage in its own pipeline, changes only what its own pipeline sees.
func TestMutatingStageGetsItsOwnCopy(t *testing.T) {
	const n = 500
	want := expected(n)
	scribbled := slices.Clone(want)
	for i, e := range scribbled {
		if strings.HasPrefix(e, "data ") {
			_, hexData, _ := strings.Cut(strings.TrimPrefix(e, "data "), " ")
			scribbled[i] = strings.Replace(e, hexData, "ff"+hexData[2:], 1)
		}
	}
	for _, tc := range []struct {
		name         string
		file         string
		main, b1, b2 []string
	}{
		{"in a branch", strings.Replace(branchFile("rec", 8192), "from = \"mid\"\nqueue = 8192\n", "from = \"mid\"\nqueue = 8192\n  [[pipeline.stage]]\n  use = \"scribble\"\n", 1), want, scribbled, want},
		{"after the tapped stage", strings.Replace(branchFile("rec", 8192), "  id = \"mid\"\n", "  id = \"mid\"\n  [[pipeline.stage]]\n  use = \"scribble\"\n", 1), scribbled, want, want},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{seen: map[string][]string{}}
			rt := branchRuntime(t, tc.file, n, rec, nil, core.NewMetrics())
			runUntil(t, rt, "main and both branches to see both streams end", func() bool {
				return rec.ended("main") && rec.ended("b1") && rec.ended("b2")
			})
			for sink, w := range map[string][]string{"main": tc.main, "b1": tc.b1, "b2": tc.b2} {
				if got := rec.get(sink); !slices.Equal(got, w) {
					t.Errorf("%s received other bytes than its own pipeline's stages make", sink)
				}
			}
		})
	}
}
