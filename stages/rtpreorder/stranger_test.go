package rtpreorder

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/internal/repair"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// TestNoRepairForStrangersSSRCs reproduces the repair half of issue 11's
// attack 1, scaled down: streams a stranger made up at the edge (SSRCs the
// cloud never heard of), each with a gap, must cost the cloud no NACK (the
// audit saw tens of thousands), and the edge no goroutine each; a real
// stream beside them is still repaired.
func TestNoRepairForStrangersSSRCs(t *testing.T) {
	const junk = 40
	srv := cloud(t, "", 100)
	ring := srv.Stream(0x55, core.NewStream("live/real"))
	for q := range uint16(20) {
		ring.Insert(q, rtpPacket(q, 0x55, 200))
	}
	s, h, clock := start(t, map[string]any{"retransmit": srv.Addr().String(), "latency": "200ms"}, false)
	waitConnected(t, s)
	goroutines := runtime.NumGoroutine()
	for i := range junk {
		st := h.StartStream(fmt.Sprintf("live/junk%d", i))
		ssrc := uint32(1_000_000 + i)
		h.SendData(st, 0, 0, rtpPacket(10, ssrc, 50))
		h.SendData(st, 0, 0, rtpPacket(12, ssrc, 50)) // 11 "lost"
	}
	real := h.StartStream("live/real")
	h.SendData(real, 0, 0, rtpPacket(4, 0x55, 200))
	h.SendData(real, 0, 0, rtpPacket(6, 0x55, 200)) // 5 lost: repaired
	testrun.Eventually(t, 5*time.Second, "the real stream repaired", func() bool { return len(seqs(h, real)) == 7 })
	equal(t, seqs(h, real), span(0, 7)) // 0-3: the head probes' backlog
	// The gaps' retries come and go; the junk gaps are skipped at latency.
	for range 10 {
		clock.Advance(25 * time.Millisecond)
		barrier(t, h)
	}
	testrun.Eventually(t, 5*time.Second, "the junk gaps skipped", func() bool { return s.gapSkipped.Value() == junk })
	if g := srv.Stats().Get(repair.EvGone); g != 0 {
		t.Errorf("the cloud answered %d sequence numbers gone: NACKs for SSRCs it never had", g)
	}
	if n := core.CounterValue(s.nacksUnknown); n == 0 {
		t.Error("no NACK held back counted (nacks_unknown_ssrc)")
	}
	if n := runtime.NumGoroutine(); n > goroutines+10 {
		t.Errorf("goroutines %d → %d for %d junk streams", goroutines, n, junk)
	}
}
