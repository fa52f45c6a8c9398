package rtpreorder

import (
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/stagetest"
)

// offline builds the stage without running it, to drive handle directly.
func offline(t *testing.T, raw map[string]any) (*Stage, *stagetest.FakeClock) {
	t.Helper()
	env := core.TestEnv("rtp-reorder")
	clock := stagetest.NewFakeClock(time.Unix(1_700_000_000, 0))
	env.Clock = clock
	s := stagetest.Build(t, "rtp-reorder", raw, env).(*Stage)
	s.timer = clock.NewTimer(time.Hour)
	s.timer.Stop()
	return s, clock
}

// TestSlotsGrowOnDemand: a stream that never reorders much keeps a small
// ring (a stream costs little, however many strangers make), and one that
// reorders far still gets its whole max_packets window, in order.
func TestSlotsGrowOnDemand(t *testing.T) {
	s, _ := offline(t, map[string]any{"max_packets": int64(4096)})
	st := core.NewStream("live/a")
	b := s.newBuffer(st)
	if n := len(b.slots); n > initialSlots {
		t.Fatalf("a new stream has %d slots, want at most %d", n, initialSlots)
	}
	out := &seqOut{}
	send := func(q uint16) {
		p := core.NewPacket(32)
		copy(p.Data, rtpPacket(q, 7, 20))
		p.Stream = st
		s.handle(p, out)
	}
	for q := range uint16(1000) {
		send(q)
	}
	if n := len(b.slots); n > initialSlots {
		t.Fatalf("in-order packets grew the ring to %d slots", n)
	}
	// 3000 packets, each window of 200 in random order, then a hole of
	// 2999 filled backwards: the window grows, releases stay in order.
	rng := rand.New(rand.NewPCG(5, 6))
	next := uint16(1000)
	for range 15 {
		perm := rng.Perm(200)
		for _, i := range perm {
			send(next + uint16(i))
		}
		next += 200
	}
	send(next + 2999)
	for q := next + 2998; q != next-1; q-- {
		send(q)
	}
	if n := len(b.slots); n < 3000 || n > 4096 {
		t.Fatalf("ring of %d slots for a 3000-packet window (max 4096)", n)
	}
	if len(out.seqs) != int(next)+3000 {
		t.Fatalf("released %d of %d", len(out.seqs), int(next)+3000)
	}
	for i, q := range out.seqs {
		if q != uint16(i) {
			t.Fatalf("release %d is seq %d", i, q)
		}
	}
	// Copies of packets released before the ring grew are still duplicates.
	before := s.duplicate.Value()
	send(next + 10)
	if s.duplicate.Value() != before+1 {
		t.Fatalf("a copy after growing not counted as duplicate (late %v)", s.late.Value())
	}
}

// tagPacket is an RTP packet carrying a whole FLV tag of typ with body.
func tagPacket(seq uint16, ssrc uint32, typ uint8, body []byte) []byte {
	b := rtpPacket(seq, ssrc, flv.HeaderSize+len(body))
	flv.PutHeader(b[12:], typ, uint32(len(body)), 0)
	copy(b[12+flv.HeaderSize:], body)
	return b
}

var onMetaDataBody = []byte{0x02, 0x00, 0x0a, 'o', 'n', 'M', 'e', 't', 'a', 'D', 'a', 't', 'a', 0x08, 0, 0, 0, 0, 0, 0, 9}

// TestInitOnlyWhenStartMissed: a stream whose first packet is its
// onMetaData (the edge saw the start) fetches nothing from the cloud; one
// joined mid-stream fetches the init tags.
func TestInitOnlyWhenStartMissed(t *testing.T) {
	srv := cloud(t, "", 100)
	for i, name := range []string{"live/seen", "live/missed"} {
		cs := core.NewStream(name)
		cs.SetInit(&core.InitTags{Metadata: []byte("meta-" + name)})
		srv.Stream(uint32(i+1), cs)
	}
	s, h, _ := start(t, map[string]any{"retransmit": srv.Addr().String()}, true)
	waitConnected(t, s)
	seen := h.StartStream("live/seen")
	h.SendData(seen, 0, 0, tagPacket(100, 1, flv.TypeScript, onMetaDataBody))
	missed := h.StartStream("live/missed")
	h.SendData(missed, 0, 0, tagPacket(500, 2, flv.TypeVideo, []byte{0x27, 1, 0, 0, 0, 0xaa}))
	deadline := time.Now().Add(5 * time.Second)
	for missed.Init() == nil && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if tags := missed.Init(); tags == nil || string(tags.Metadata) != "meta-live/missed" {
		t.Fatalf("stream joined mid-stream: init tags %+v", tags)
	}
	time.Sleep(300 * time.Millisecond) // a fetch would be done by now
	if tags := seen.Init(); tags != nil {
		t.Fatalf("stream seen from its start fetched init tags %+v", tags)
	}
	if v := core.CounterValue(s.initFetched); v != 1 {
		t.Fatalf("init_fetched = %v, want 1", v)
	}
}

// TestInitFetchesBounded: many streams joined mid-stream that the cloud
// does not know (outside input) do not each get a fetch goroutine.
func TestInitFetchesBounded(t *testing.T) {
	srv := cloud(t, "", 100)
	s, h, _ := start(t, map[string]any{"retransmit": srv.Addr().String()}, true)
	waitConnected(t, s)
	before := runtime.NumGoroutine()
	for i := range 200 {
		// One SSRC for all, so the client's one request stream per SSRC
		// does not blur the count.
		st := h.StartStream("live/fake")
		h.SendData(st, 0, 0, rtpPacket(uint16(i), 1000, 20))
	}
	barrier(t, h)
	peak := 0
	for range 50 {
		peak = max(peak, runtime.NumGoroutine()-before)
		time.Sleep(2 * time.Millisecond)
	}
	if peak > 4*maxInitFetches {
		t.Fatalf("%d more goroutines for 200 streams (fetches at once: at most %d)", peak, maxInitFetches)
	}
}

// TestRepairConnectedGauge: repair_connected follows the connection, with
// no packet flowing: 1 once connected, 0 soon after the cloud goes away.
func TestRepairConnectedGauge(t *testing.T) {
	srv, stop := cloudAt(t, "127.0.0.1:0", "", 100)
	s, _, _ := start(t, map[string]any{"retransmit": srv.Addr().String()}, true)
	waitGauge := func(want float64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for core.GaugeValue(s.connGauge) != want {
			if time.Now().After(deadline) {
				t.Fatalf("repair_connected = %v, want %v (connected: %v)", core.GaugeValue(s.connGauge), want, s.Connected())
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitGauge(1)
	stop()
	waitGauge(0)
}
