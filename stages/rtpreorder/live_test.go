package rtpreorder

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/repair"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// startDef builds rtp-reorder through its registered Definition, as the
// host does, and runs it: the stage and the definition whose Reconfigure
// a reload calls.
func startDef(t *testing.T, raw map[string]any, real bool) (core.Definition, core.Stage, *stagetest.Harness, *stagetest.FakeClock) {
	t.Helper()
	def, ok := core.Default.Lookup("rtp-reorder")
	if !ok {
		t.Fatal("rtp-reorder is not registered")
	}
	for _, name := range []string{"token", "latency", "max_latency"} {
		if p := def.Spec.Param(name); p == nil || !p.Live {
			t.Fatalf("%s is not marked live", name)
		}
	}
	env := core.TestEnv("rtp-reorder")
	clock := stagetest.NewFakeClock(time.Unix(1_700_000_000, 0))
	if !real {
		env.Clock = clock
	}
	st, err := def.Build(raw, env)
	if err != nil {
		t.Fatal(err)
	}
	return def, st, stagetest.Start(t, st, env, false), clock
}

// TestLiveLatency: a gap found before a reload keeps the latency it was
// given; one found after it waits the new latency; a refused change leaves
// the latency as it was.
func TestLiveLatency(t *testing.T) {
	def, st, h, clock := startDef(t, map[string]any{"latency": "80ms"}, false)
	s := st.(*Stage)
	before := h.StartStream("live/before")
	h.SendData(before, 0, 0, rtpPacket(1, 1, 20))
	h.SendData(before, 0, 0, rtpPacket(3, 1, 20)) // gap 2, 80 ms
	barrier(t, h)
	if err := def.Reconfigure(st, map[string]any{"latency": "300ms"}); err != nil {
		t.Fatal(err)
	}
	after := h.StartStream("live/after")
	h.SendData(after, 0, 0, rtpPacket(1, 2, 20))
	h.SendData(after, 0, 0, rtpPacket(3, 2, 20)) // gap 2, 300 ms
	barrier(t, h)

	clock.Advance(80 * time.Millisecond)
	barrier(t, h)
	equal(t, seqs(h, before), []uint16{1, 3})
	equal(t, seqs(h, after), []uint16{1})
	clock.Advance(219 * time.Millisecond)
	barrier(t, h)
	equal(t, seqs(h, after), []uint16{1})
	clock.Advance(time.Millisecond)
	barrier(t, h)
	equal(t, seqs(h, after), []uint16{1, 3})
	if v := s.gapSkipped.Value(); v != 2 {
		t.Fatalf("gap_skipped %v, want 2", v)
	}

	// Refused, whole: the stage keeps 300 ms.
	for _, bad := range []map[string]any{
		{"latency": "0s"},
		{"latency": "20s"},
		{"latency": "50ms", "max_latency": "nope"},
		{"token": "x"}, // a token without retransmit
	} {
		if err := def.Reconfigure(st, bad); err == nil {
			t.Fatalf("%v accepted", bad)
		}
	}
	// Not live: the host restarts the pipeline instead.
	if err := def.Reconfigure(st, map[string]any{"latency": "50ms", "max_packets": int64(100)}); !errors.Is(err, core.ErrNotLive) {
		t.Fatalf("a max_packets change: %v, want ErrNotLive", err)
	}
	still := h.StartStream("live/still")
	h.SendData(still, 0, 0, rtpPacket(1, 3, 20))
	h.SendData(still, 0, 0, rtpPacket(3, 3, 20))
	barrier(t, h)
	clock.Advance(299 * time.Millisecond)
	barrier(t, h)
	equal(t, seqs(h, still), []uint16{1})
	clock.Advance(time.Millisecond)
	barrier(t, h)
	equal(t, seqs(h, still), []uint16{1, 3})
}

// TestLiveMaxLatency: the adaptive wait (shown by gap_wait_seconds) takes
// a reload's new bounds: a lower max_latency caps it, a latency above the
// measured round trip sets it.
func TestLiveMaxLatency(t *testing.T) {
	srv := cloud(t, "", 10)
	def, st, _, _ := startDef(t, map[string]any{"retransmit": srv.Addr().String(), "latency": "200ms", "max_latency": "500ms"}, false)
	s := st.(*Stage)
	waitConnected(t, s)
	// Run's goroutine owns srtt; it is given no packets here, and
	// Reconfigure's wake-up orders these samples before its reads.
	for range 20 {
		s.sampleRepairDelay(450 * time.Millisecond)
	}
	raw := map[string]any{"retransmit": srv.Addr().String()}
	wait := func(want float64) {
		t.Helper()
		testrun.Eventually(t, 5*time.Second, "gap_wait_seconds follows the change", func() bool {
			return core.GaugeValue(s.waitGauge) == want
		})
	}
	raw["latency"], raw["max_latency"] = "200ms", "300ms"
	if err := def.Reconfigure(st, raw); err != nil {
		t.Fatal(err)
	}
	wait(0.3)
	raw["latency"], raw["max_latency"] = "2s", "3s"
	if err := def.Reconfigure(st, raw); err != nil {
		t.Fatal(err)
	}
	wait(2)
}

// A gap found with one latency and waiting on past its deadline after a
// reload changed latency and max_latency: it waits on to max_latency from
// when it was found, measured with its own latency.
func TestWaitOnAfterLatencyChange(t *testing.T) {
	r := newRig(t, 64, 80*time.Millisecond, 20*time.Millisecond)
	r.env.maxWait = time.Second
	r.b.fromStart = true // no head probes
	r.insert(1, false)
	r.insert(3, false)                                                        // gap 2, asked now, 80 ms
	r.env.latency, r.env.maxWait = 300*time.Millisecond, 400*time.Millisecond // what applyLive sets
	r.advance(80 * time.Millisecond)
	r.advance(319 * time.Millisecond)
	if r.gapSkipped != 0 {
		t.Fatal("skipped before the new max_latency from when it was found")
	}
	r.advance(time.Millisecond)
	if r.gapSkipped != 1 {
		t.Fatalf("skipped %d at the new max_latency, want 1", r.gapSkipped)
	}
	r.check()
}

// TestLiveToken: a token given by a reload is what the next HELLO carries:
// an edge refused for its token connects once given the right one; a second
// change leaves the connection up (still repairing, no new HELLO); after
// the cloud restarts with the newest token the edge gets in with it. A
// refused change leaves the token as it was.
func TestLiveToken(t *testing.T) {
	const ssrc = 0x42
	fill := func(srv *repair.Server) {
		ring := srv.Stream(ssrc, core.NewStream("live/a"))
		// Not 0: the head probes before the first packet are answered gone.
		for q := uint16(1); q < 20; q++ {
			ring.Insert(q, rtpPacket(q, ssrc, 100))
		}
	}
	srv1, stop1 := cloudAt(t, "127.0.0.1:0", "new", 100)
	fill(srv1)
	addr := srv1.Addr().String()
	raw := map[string]any{"retransmit": addr, "token": "old", "latency": "3s"}
	def, st, h, _ := startDef(t, raw, true)
	s := st.(*Stage)
	testrun.Eventually(t, 5*time.Second, "the old token refused", func() bool {
		c := s.shared.Load()
		return c != nil && errors.Is(c.LastError(), repair.ErrUnauthorized)
	})

	stream := h.StartStream("live/a")
	var want []uint16
	gap := func(first uint16) { // sends first and first+2: first+1 needs a repair
		t.Helper()
		h.SendData(stream, 0, 0, rtpPacket(first, ssrc, 100))
		h.SendData(stream, 0, 0, rtpPacket(first+2, ssrc, 100))
		want = append(want, first, first+1, first+2)
		h.Out.WaitData(len(want), 5*time.Second)
		equal(t, seqs(h, stream), want)
	}

	raw["token"] = "new"
	if err := def.Reconfigure(st, raw); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, s)
	gap(1)

	refusals := srv1.Stats().Get(repair.EvAuthFailed)
	raw["token"] = "newer"
	if err := def.Reconfigure(st, raw); err != nil {
		t.Fatal(err)
	}
	gap(4) // repaired over the connection that was up
	if !s.Connected() || srv1.Stats().Get(repair.EvAuthFailed) != refusals {
		t.Fatalf("connected %v, auth failures %d → %d: the token change cut the connection", s.Connected(), refusals, srv1.Stats().Get(repair.EvAuthFailed))
	}

	raw["token"] = strings.Repeat("k", 300)
	if err := def.Reconfigure(st, raw); err == nil {
		t.Fatal("a token over the limit was accepted")
	}

	stop1()
	testrun.Eventually(t, 5*time.Second, "the edge noticed the cloud stopping", func() bool { return !s.Connected() })
	srv2, _ := cloudAt(t, addr, "newer", 100)
	fill(srv2)
	waitConnected(t, s)
	gap(7)
	if v := core.CounterValue(s.repaired); v != 3 {
		t.Fatalf("repaired %v, want 3", v)
	}
}
