package netsim

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/stagetest"
)

type rig struct {
	h     *stagetest.Harness
	env   *core.Env
	clock *stagetest.FakeClock
}

func start(t *testing.T, raw map[string]any) rig {
	t.Helper()
	def, ok := core.Default.Lookup("netsim")
	if !ok {
		t.Fatal("netsim is not registered")
	}
	env := core.TestEnv("netsim")
	env.Metrics.SetLogger(env.Log)
	clock := stagetest.NewFakeClock(time.Unix(1_700_000_000, 0))
	env.Clock = clock
	st, err := def.Build(raw, env)
	if err != nil {
		t.Fatal(err)
	}
	return rig{h: stagetest.Start(t, st, env, false), env: env, clock: clock}
}

func (r rig) send(s *core.Stream, i int) {
	r.h.SendData(s, 0, 0, binary.BigEndian.AppendUint32(nil, uint32(i)))
}

func index(p stagetest.Captured) int { return int(binary.BigEndian.Uint32(p.Data)) }

// pass runs n packets of one stream through a netsim with raw params and
// returns the indexes that came out, in order.
func pass(t *testing.T, raw map[string]any, n int) ([]int, rig) {
	t.Helper()
	r := start(t, raw)
	s := r.h.StartStream("live/sim")
	for i := 0; i < n; i++ {
		r.send(s, i)
	}
	r.h.EndStream(s)
	if err := r.h.Close(); err != nil {
		t.Fatal(err)
	}
	all := r.h.Out.Packets()
	if all[0].Event != core.EventStart || all[len(all)-1].Event != core.EventEnd {
		t.Fatalf("stream events out of place")
	}
	var out []int
	for _, p := range r.h.Out.Data() {
		out = append(out, index(p))
	}
	return out, r
}

type measured struct {
	loss, dup, reorder float64 // loss per input packet; dup and reorder per distinct packet that arrived
	runs               []int   // lengths of runs of lost packets
	lastRunAtEnd       bool    // the last run reaches the end of the input
}

func measure(out []int, n int) (m measured, lost, dups, inversions int) {
	seen := make([]bool, n)
	distinct := 0
	for i, x := range out {
		if seen[x] {
			dups++
		} else {
			seen[x] = true
			distinct++
		}
		if i > 0 && x < out[i-1] {
			inversions++
		}
	}
	lost = n - distinct
	run := 0
	for i := 0; i <= n; i++ {
		if i < n && !seen[i] {
			run++
		} else if run > 0 {
			m.runs = append(m.runs, run)
			m.lastRunAtEnd = i == n
			run = 0
		}
	}
	m.loss = float64(lost) / float64(n)
	m.dup = float64(dups) / float64(distinct)
	m.reorder = float64(inversions) / float64(distinct)
	return m, lost, dups, inversions
}

func TestRates(t *testing.T) {
	const n = 100_000
	cases := []struct {
		name               string
		raw                map[string]any
		loss, dup, reorder float64
		burst              int
	}{
		{"drop", map[string]any{"drop": 0.1, "seed": int64(1)}, 0.1, 0, 0, 1},
		{"duplicate", map[string]any{"duplicate": 0.05, "seed": int64(2)}, 0, 0.05, 0, 1},
		{"reorder", map[string]any{"reorder": 0.1, "seed": int64(3)}, 0, 0, 0.1, 1},
		{"reorder_half", map[string]any{"reorder": 0.5, "seed": int64(4)}, 0, 0, 0.5, 1},
		{"burst", map[string]any{"drop": 0.03, "burst": int64(5), "seed": int64(5)}, 0.03, 0, 0, 5},
		{"all", map[string]any{"drop": 0.1, "burst": int64(3), "duplicate": 0.02, "reorder": 0.05, "seed": int64(6)}, 0.1, 0.02, 0.05, 3},
	}
	const tol = 0.005 // at least 4 standard deviations for each rate here
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, r := pass(t, c.raw, n)
			m, lost, dups, inversions := measure(out, n)
			for _, x := range []struct {
				what      string
				got, want float64
			}{{"loss", m.loss, c.loss}, {"duplicate", m.dup, c.dup}, {"reorder", m.reorder, c.reorder}} {
				if math.Abs(x.got-x.want) > tol {
					t.Errorf("%s rate %.4f, want %.3f ± %.3f", x.what, x.got, x.want, tol)
				}
			}
			// losses come in whole bursts (adjacent bursts merge); only a
			// burst cut off by the end of the input may be shorter
			for i, run := range m.runs {
				if run%c.burst != 0 && !(i == len(m.runs)-1 && m.lastRunAtEnd) {
					t.Fatalf("a loss run of %d packets with burst %d", run, c.burst)
				}
			}
			t.Logf("loss %.4f dup %.4f reorder %.4f, %d loss runs", m.loss, m.dup, m.reorder, len(m.runs))
			counters := []struct {
				name string
				got  float64
				want int
			}{
				{"simulated_loss", r.env.Metrics.Drop("simulated_loss").Value(), lost},
				{"duplicated", core.CounterValue(r.env.Metrics.Counter("duplicated")), dups},
				{"reordered", core.CounterValue(r.env.Metrics.Counter("reordered")), inversions},
			}
			for _, k := range counters {
				if int(k.got) != k.want {
					t.Errorf("counter %s = %v, output shows %d", k.name, k.got, k.want)
				}
			}
		})
	}
}

func TestSeeds(t *testing.T) {
	raw := func(seed int64) map[string]any {
		return map[string]any{"drop": 0.2, "burst": int64(2), "duplicate": 0.1, "reorder": 0.1, "seed": seed}
	}
	a, _ := pass(t, raw(7), 5000)
	b, _ := pass(t, raw(7), 5000)
	c, _ := pass(t, raw(8), 5000)
	if !slices.Equal(a, b) {
		t.Errorf("the same seed gave different output")
	}
	if slices.Equal(a, c) {
		t.Errorf("different seeds gave the same output")
	}
	x, _ := pass(t, raw(0), 5000)
	y, _ := pass(t, raw(0), 5000)
	if slices.Equal(x, y) {
		t.Errorf("seed 0 gave the same output twice: not random")
	}
}

// TestReorderPerStream: with reorder 0.5 every other packet of each stream is
// swapped with its own successor, never with another stream's, and a packet
// held when its stream ends goes out before the end.
func TestReorderPerStream(t *testing.T) {
	r := start(t, map[string]any{"reorder": 0.5, "seed": int64(1)})
	a := r.h.StartStream("live/a")
	b := r.h.StartStream("live/b")
	for i := 0; i < 5; i++ {
		r.send(a, i)
		r.send(b, 100+i)
	}
	r.h.EndStream(a)
	r.h.EndStream(b)
	if err := r.h.Close(); err != nil {
		t.Fatal(err)
	}
	got := map[*core.Stream]string{}
	for _, p := range r.h.Out.Packets() {
		if p.Event == core.EventData {
			got[p.Stream] += fmt.Sprint(index(p), " ")
		} else {
			got[p.Stream] += p.Event.String() + " "
		}
	}
	if got[a] != "start 1 0 3 2 4 end " || got[b] != "start 101 100 103 102 104 end " {
		t.Fatalf("a: %s\nb: %s", got[a], got[b])
	}
}

func waitGauge(t *testing.T, env *core.Env, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for core.GaugeValue(env.Metrics.Gauge(name)) != want {
		if time.Now().After(deadline) {
			t.Fatalf("gauge %s = %v, want %v", name, core.GaugeValue(env.Metrics.Gauge(name)), want)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestDelay(t *testing.T) {
	r := start(t, map[string]any{"delay": "50ms"})
	s := r.h.StartStream("live/d")
	for i := 0; i < 5; i++ {
		r.send(s, i)
	}
	waitGauge(t, r.env, "delay_queue", 6) // start + 5
	r.clock.Advance(20 * time.Millisecond)
	for i := 5; i < 10; i++ {
		r.send(s, i)
	}
	r.h.EndStream(s)
	waitGauge(t, r.env, "delay_queue", 12)
	r.clock.Advance(29 * time.Millisecond) // 49 ms after the first batch: nothing is due
	if n := len(r.h.Out.Packets()); n != 0 {
		t.Fatalf("%d packets out before their delay", n)
	}
	r.clock.Advance(time.Millisecond) // the first batch is due
	if d := r.h.Out.WaitData(5, 5*time.Second); len(d) != 5 || index(d[4]) != 4 {
		t.Fatalf("first batch: %d packets", len(d))
	}
	waitGauge(t, r.env, "delay_queue", 6)
	r.clock.Advance(20 * time.Millisecond)
	d := r.h.Out.WaitData(10, 5*time.Second)
	waitGauge(t, r.env, "delay_queue", 0)
	all := r.h.Out.Packets()
	if len(d) != 10 || len(all) != 12 || all[0].Event != core.EventStart || all[11].Event != core.EventEnd {
		t.Fatalf("got %d data, %d in all", len(d), len(all))
	}
	for i, p := range d {
		if index(p) != i {
			t.Fatalf("packet %d is %d: delay reordered", i, index(p))
		}
	}
}

func TestDelayQueueBoundAndFlush(t *testing.T) {
	r := start(t, map[string]any{"delay": "1h", "max_queue": int64(5)})
	s := r.h.StartStream("live/q")
	for i := 0; i < 10; i++ {
		r.send(s, i)
	}
	r.h.EndStream(s)                    // an event always finds room
	if err := r.h.Close(); err != nil { // closing the input sends everything held at once
		t.Fatal(err)
	}
	all := r.h.Out.Packets()
	if len(all) != 7 || all[6].Event != core.EventEnd || index(all[5]) != 4 {
		t.Fatalf("%d packets out", len(all))
	}
	if v := r.env.Metrics.Drop("delay_queue_full").Value(); v != 5 {
		t.Errorf("delay_queue_full = %v", v)
	}
}

func TestParams(t *testing.T) {
	def, _ := core.Default.Lookup("netsim")
	for _, c := range []struct {
		raw  map[string]any
		errs int
	}{
		{map[string]any{}, 0},
		{map[string]any{"drop": 0.5, "burst": int64(4), "duplicate": 1.0, "reorder": 0.3, "delay": "10ms", "seed": int64(-3), "max_queue": int64(1)}, 0},
		{map[string]any{"drop": 1.5}, 1},
		{map[string]any{"burst": int64(0)}, 1},
		{map[string]any{"reorder": -0.1, "duplicate": 2.0}, 2},
		{map[string]any{"delay": "-1s"}, 1},
		{map[string]any{"max_queue": int64(0)}, 1},
		{map[string]any{"drop": 1.0, "burst": int64(2)}, 1},
	} {
		if errs := def.Check(c.raw); len(errs) != c.errs {
			t.Errorf("%v: %v", c.raw, errs)
		}
	}
}

type discard struct{}

func (discard) Emit(p *core.Packet) { p.Release() }

// BenchmarkNetsim runs packets through the per-packet path with every effect
// on (delay 0: the timer path is exercised by the tests).
func BenchmarkNetsim(b *testing.B) {
	env := core.TestEnv("bench")
	env.Metrics.SetLogger(env.Log)
	st, err := New(&Config{Drop: 0.05, Burst: 2, Duplicate: 0.05, Reorder: 0.05, Seed: 1, MaxQueue: 10}, env)
	if err != nil {
		b.Fatal(err)
	}
	s := st.(*Stage)
	s.out = discard{}
	stream := core.NewStream("live/bench")
	s.handle(core.NewEvent(core.EventStart, stream))
	b.ReportAllocs()
	for b.Loop() {
		p := core.NewPacket(1192)
		p.Stream = stream
		s.handle(p)
	}
}
