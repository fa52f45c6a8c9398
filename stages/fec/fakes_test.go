package fec

import (
	"context"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/stagetest"
)

// fakeEdges is a quic-retransmit as the controller sees it: the edges'
// latest reports, set by the test.
type fakeEdges struct {
	idle
	mu    sync.Mutex
	edges []core.Edge
}

// idle is the core.Stage part of the fakes: they only need to be listed.
type idle struct{}

func (idle) Run(context.Context, <-chan *core.Packet, core.Output) error { return nil }

func (f *fakeEdges) set(edges []core.Edge) {
	f.mu.Lock()
	f.edges = edges
	f.mu.Unlock()
}

func (f *fakeEdges) Edges() []core.Edge {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]core.Edge(nil), f.edges...)
}

// fakePacer records what the controller sets (udp-sink).
type fakePacer struct {
	idle
	mu   sync.Mutex
	pace map[*core.Stream]float64
	sets int
}

func (f *fakePacer) SetPace(s *core.Stream, bps float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pace == nil {
		f.pace = map[*core.Stream]float64{}
	}
	f.pace[s] = bps
	f.sets++
}

func (f *fakePacer) get(s *core.Stream) float64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pace[s]
}

// fakeSharer records the repair rates set (quic-retransmit's total_rate).
type fakeSharer struct {
	idle
	mu       sync.Mutex
	budget   int
	rates    map[int]int
	repaired map[int]uint64
}

func (f *fakeSharer) RepairBudget() int { return f.budget }

func (f *fakeSharer) SetRepairRates(r map[int]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rates = r
}

func (f *fakeSharer) RepairedBytes() map[int]uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[int]uint64{}
	for k, v := range f.repaired {
		out[k] = v
	}
	return out
}

func (f *fakeSharer) get() map[int]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rates
}

// ctlEncoder builds a fec-encoder with a controller whose siblings are
// sibs, on a fake clock, and drives it by hand (handle, tick).
func ctlEncoder(t testing.TB, params map[string]any, sibs ...core.Stage) (*Encoder, *stagetest.FakeClock, *stagetest.Collector) {
	t.Helper()
	env := core.TestEnv("fec-encoder")
	clock := stagetest.NewFakeClock(time.Unix(1_700_000_000, 0))
	env.Clock = clock
	env.Siblings = func() []core.Stage { return sibs }
	var cfg EncoderConfig
	stagetest.Decode(t, "fec-encoder", params, &cfg)
	st, err := NewEncoder(&cfg, env)
	if err != nil {
		t.Fatal(err)
	}
	e := st.(*Encoder)
	out := stagetest.NewCollector()
	e.out, e.timer = out, clock.NewTimer(time.Hour)
	e.timer.Stop()
	return e, clock, out
}

// rtpPacket is an RTP packet of payload type 100 with size bytes of payload.
func rtpPacket(ssrc uint32, seq uint16, ts uint32, size int) []byte {
	b := make([]byte, rtpHeader+size)
	b[0], b[1] = 2<<6, 100
	binary.BigEndian.PutUint16(b[2:], seq)
	binary.BigEndian.PutUint32(b[4:], ts)
	binary.BigEndian.PutUint32(b[8:], ssrc)
	return b
}
