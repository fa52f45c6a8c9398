package rtpreorder

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// slowLink relays UDP between one client and server, delaying every
// datagram by oneWay: a repair round trip slower than rtp-reorder's
// latency, as under CPU starvation (issue 11). It ends with the test.
func slowLink(t *testing.T, server string, oneWay time.Duration) string {
	t.Helper()
	front, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	dst, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	back, err := net.DialUDP("udp", nil, dst)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		client *net.UDPAddr
		wg     sync.WaitGroup
	)
	later := func(send func([]byte), b []byte) {
		p := append([]byte(nil), b...)
		time.AfterFunc(oneWay, func() { send(p) })
	}
	wg.Add(2)
	go func() { // client → server
		defer wg.Done()
		buf := make([]byte, 65536)
		for {
			n, from, err := front.ReadFromUDP(buf)
			if err != nil {
				return
			}
			mu.Lock()
			client = from
			mu.Unlock()
			later(func(p []byte) { _, _ = back.Write(p) }, buf[:n])
		}
	}()
	go func() { // server → client
		defer wg.Done()
		buf := make([]byte, 65536)
		for {
			n, err := back.Read(buf)
			if err != nil {
				return
			}
			mu.Lock()
			to := client
			mu.Unlock()
			if to != nil {
				later(func(p []byte) { _, _ = front.WriteToUDP(p, to) }, buf[:n])
			}
		}
	}()
	t.Cleanup(func() {
		front.Close()
		back.Close()
		wg.Wait()
	})
	return front.LocalAddr().String()
}

// A repair round trip of 200 ms, longer than latency (80 ms): a gap waits
// for its answer (up to max_latency) and the packet comes out repaired, in
// order. With the fixed latency every gap was skipped and its repair
// dropped as late.
func TestSlowRepairWaitsForAnswer(t *testing.T) {
	srv := cloud(t, "", 1000)
	ring := srv.Stream(0x55, core.NewStream("live/a"))
	for q := uint16(1); q <= 40; q++ {
		ring.Insert(q, rtpPacket(q, 0x55, 200))
	}
	addr := slowLink(t, srv.Addr().String(), 100*time.Millisecond)
	s, h, _ := start(t, map[string]any{"retransmit": addr, "latency": "80ms"}, true)
	waitConnected(t, s)
	st := h.StartStream("live/a")
	lost := map[uint16]bool{5: true, 6: true, 20: true, 33: true}
	for q := uint16(1); q <= 40; q++ {
		if !lost[q] {
			h.SendData(st, 0, 0, rtpPacket(q, 0x55, 200))
		}
	}
	testrun.Eventually(t, 10*time.Second, "40 packets out", func() bool {
		return len(seqs(h, st)) >= 40 || s.gapSkipped.Value() > 0
	})
	equal(t, seqs(h, st), span(1, 40))
	if r, l := core.CounterValue(s.repaired), s.late.Value(); r != 4 || l != 0 {
		t.Fatalf("repaired %v late %v, want 4 repaired, none late", r, l)
	}
	if n := core.CounterValue(s.repairedLate); n != 4 {
		t.Errorf("repaired_after_latency %v, want 4", n)
	}
}

// The wait follows the round trip only up to max_latency: with a bound
// below the round trip a gap is skipped at the bound (not before: its ask
// is unanswered) and its repair comes late.
func TestSlowRepairBoundedByMaxLatency(t *testing.T) {
	srv := cloud(t, "", 1000)
	ring := srv.Stream(0x56, core.NewStream("live/a"))
	for q := uint16(1); q <= 100; q++ {
		ring.Insert(q, rtpPacket(q, 0x56, 200))
	}
	addr := slowLink(t, srv.Addr().String(), 100*time.Millisecond)
	s, h, _ := start(t, map[string]any{"retransmit": addr, "latency": "50ms", "max_latency": "120ms"}, true)
	waitConnected(t, s)
	st := h.StartStream("live/a")
	h.SendData(st, 0, 0, rtpPacket(1, 0x56, 200))
	want := []uint16{1}
	// Gaps one at a time, each once the one before was skipped, until a
	// repair comes back late: the first ones may open before the SSRC is
	// vetted.
	for q := uint16(3); s.late.Value() == 0; q += 2 {
		if q > 99 {
			t.Fatal("no repair came back late")
		}
		skipped, sent := s.gapSkipped.Value(), time.Now()
		h.SendData(st, 0, 0, rtpPacket(q, 0x56, 200))
		want = append(want, q)
		testrun.Eventually(t, 5*time.Second, "the gap skipped", func() bool { return s.gapSkipped.Value() > skipped })
		// Unanswered, it waited on past latency to the bound (and,
		// as its repair came late, not to the round trip).
		if d := time.Since(sent); d < 120*time.Millisecond {
			t.Fatalf("gap %d skipped after %v, before max_latency", q-1, d)
		}
	}
	equal(t, seqs(h, st), want)
	if r := core.CounterValue(s.repaired); r != 0 {
		t.Errorf("repaired %v: nothing comes back within 120 ms", r)
	}
	// A round trip past the bound teaches the wait nothing.
	if w := core.GaugeValue(s.waitGauge); w != 0 && w != 0.05 {
		t.Errorf("gap_wait_seconds %v, want latency", w)
	}
}

// On a fake clock: a gap given a wait past latency is not skipped at
// latency, is skipped exactly at its wait, and what its last ask came to
// says how the skip is counted.
func TestGapWaitAndSkipReasons(t *testing.T) {
	r := newRig(t, 64, 80*time.Millisecond, 20*time.Millisecond)
	r.env.wait = func() time.Duration { return 300 * time.Millisecond }
	r.insert(1, false)
	r.insert(3, false) // gap 2
	r.insert(5, false) // gap 4
	r.insert(7, false) // gap 6
	r.b.note([]uint16{4}, whyRefused)
	r.b.note([]uint16{6}, whyUnavailable)
	r.advance(200 * time.Millisecond)
	r.insert(2, true) // past latency, within the wait
	if r.repaired != 1 || r.repairLate != 1 || r.gapSkipped != 0 {
		t.Fatalf("repaired %d (after latency %d), skipped %d", r.repaired, r.repairLate, r.gapSkipped)
	}
	r.advance(99 * time.Millisecond)
	if r.gapSkipped != 0 {
		t.Fatalf("skipped %d before the wait was over", r.gapSkipped)
	}
	r.advance(time.Millisecond)
	if r.gapSkipped != 2 || r.refused != 1 || r.unavailable != 1 {
		t.Fatalf("skipped %d (refused %d, unavailable %d), want 2 (1, 1)", r.gapSkipped, r.refused, r.unavailable)
	}
	equal(t, r.seqs(), []uint16{1, 2, 3, 5, 7})
	r.check()
	// A late repair still measures the round trip.
	delays := len(r.delays)
	r.insert(4, true)
	if r.late != 1 || len(r.delays) != delays+1 {
		t.Fatalf("late %d, %d delay samples", r.late, len(r.delays)-delays)
	}
}

// The wait: latency while repairs are fast, the round trip's timeout when
// they are not, never past max_latency, and never below latency.
func TestGapWaitFollowsRoundTrip(t *testing.T) {
	srv := cloud(t, "", 10)
	s, _, _ := start(t, map[string]any{"retransmit": srv.Addr().String(), "latency": "200ms", "max_latency": "500ms"}, false)
	waitConnected(t, s)
	// Run's goroutine owns srtt; these reads and samples run on a stage
	// that is given no packets, so nothing else touches them.
	if w := s.gapWait(); w != 200*time.Millisecond {
		t.Fatalf("loopback: wait %v, want latency", w)
	}
	s.sampleRepairDelay(100 * time.Millisecond) // srtt 100, rttvar 50: 300
	if w := s.gapWait(); w != 300*time.Millisecond {
		t.Fatalf("wait %v, want 300ms", w)
	}
	for range 20 {
		s.sampleRepairDelay(450 * time.Millisecond)
	}
	if w := s.gapWait(); w != 500*time.Millisecond {
		t.Fatalf("wait %v, want the bound", w)
	}
	s.sampleRepairDelay(2 * time.Second) // beyond the bound: ignored
	if s.srtt > 500*time.Millisecond {
		t.Fatalf("srtt %v took a sample past the bound", s.srtt)
	}
}

// A burst of gaps before any round trip is measured (a stream's start, a
// loss burst) got latency, the only wait known: a gap whose ask is still
// unanswered at its deadline waits on, up to max_latency, while one whose
// answer evidently went missing (a later ask was answered) is skipped.
func TestUnansweredGapWaitsOn(t *testing.T) {
	r := newRig(t, 64, 80*time.Millisecond, 20*time.Millisecond)
	r.env.maxWait = time.Second
	r.b.fromStart = true // no head probes
	r.insert(1, false)
	r.insert(3, false) // gap 2, asked now
	r.advance(80 * time.Millisecond)
	if r.gapSkipped != 0 {
		t.Fatal("an unanswered gap was skipped at latency")
	}
	r.advance(320 * time.Millisecond)
	r.insert(2, true) // its answer, 400 ms on
	if r.repaired != 1 || r.repairLate != 1 || r.gapSkipped != 0 {
		t.Fatalf("repaired %d (after latency %d), skipped %d", r.repaired, r.repairLate, r.gapSkipped)
	}
	equal(t, r.seqs(), []uint16{1, 2, 3})

	// Never answered: skipped at max_latency, not a moment later.
	r.insert(5, false) // gap 4
	r.advance(999 * time.Millisecond)
	if r.gapSkipped != 0 {
		t.Fatal("skipped before max_latency")
	}
	r.advance(time.Millisecond)
	if r.gapSkipped != 1 {
		t.Fatalf("skipped %d at max_latency, want 1", r.gapSkipped)
	}

	// Gap 6's answer went missing: gap 8, asked after it, was answered.
	r.insert(7, false) // gap 6
	r.advance(10 * time.Millisecond)
	r.insert(9, false) // gap 8
	r.advance(10 * time.Millisecond)
	r.insert(8, true)
	r.advance(60 * time.Millisecond) // gap 6 at latency
	if r.gapSkipped != 2 {
		t.Fatalf("skipped %d, want gap 6 skipped at latency", r.gapSkipped)
	}
	equal(t, r.seqs(), []uint16{1, 2, 3, 5, 7, 8, 9})
	r.check()
}
