package quicretransmit

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// total_rate shared by two edges that ask for more than it: with rates set
// 3:1 (control.RepairSharer), their repaired bytes over the same window
// follow 3:1, neither exceeds its rate (plus its burst), and what is over
// is refused and counted. When one edge leaves, the other gets the whole
// budget.
func TestSharedRepairRate(t *testing.T) {
	const total = 2_000_000
	env := core.TestEnv("quic-retransmit")
	st := stagetest.Build(t, "quic-retransmit", map[string]any{"listen": "127.0.0.1:0", "total_rate": int64(total)}, env).(*Stage)
	h := stagetest.Start(t, st, env, false)
	addr := st.Addr().String()
	const ssrc = 0x5a
	stream := h.StartStream("live/share")
	for i := 0; i < 400; i++ {
		h.SendData(stream, 0, 0, rtpPacket(uint16(i), ssrc, 1188))
	}
	h.Out.WaitData(400, testrun.WaitLimit)
	if st.RepairBudget() != total {
		t.Fatalf("RepairBudget %d, want %d", st.RepairBudget(), total)
	}

	// Slots are given lowest first: a is 0, b is 1.
	a := dialEdge(t, addr, "")
	a.connected(t)
	testrun.Eventually(t, testrun.WaitLimit, "a registered", func() bool { return len(st.Edges()) == 1 })
	b := dialEdge(t, addr, "")
	b.connected(t)
	testrun.Eventually(t, testrun.WaitLimit, "b registered", func() bool { return len(st.Edges()) == 2 })
	st.SetRepairRates(map[int]int{0: total * 3 / 4, 1: total / 4})

	// Both ask far more than the budget for the same window.
	const window = 1500 * time.Millisecond
	ask := func(edges ...*edge) map[int]uint64 {
		before := st.RepairedBytes()
		var wg sync.WaitGroup
		stop := time.Now().Add(window)
		errs := make(chan error, len(edges))
		for _, e := range edges {
			wg.Go(func() {
				for time.Now().Before(stop) {
					if err := e.askAll(ssrc, 200); err != nil {
						errs <- err
						return
					}
					time.Sleep(5 * time.Millisecond) // load, not synchronisation
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		after := st.RepairedBytes()
		for id := range after {
			after[id] -= before[id]
		}
		return after
	}
	got := ask(a, b)
	ra, rb := float64(got[0]), float64(got[1])
	t.Logf("repaired over %v: a %.0f B, b %.0f B (ratio %.2f)", window, ra, rb, ra/rb)
	// Each bucket starts with a quarter second of its rate and earns its
	// rate over the window (which may stretch by a round trip).
	limit := func(rate float64) float64 { return rate*(window.Seconds()+0.25) + rate/4 + 64<<10 }
	if ra > limit(total*3/4) || rb > limit(total/4) {
		t.Fatalf("over the rates set: a %.0f B, b %.0f B", ra, rb)
	}
	if rb == 0 || ra/rb < 2.4 || ra/rb > 3.6 {
		t.Fatalf("repaired a %.0f B, b %.0f B: ratio %.2f, want about 3", ra, rb, ra/rb)
	}
	if refused := env.Metrics.Drop("refused_rate").Value(); refused == 0 {
		t.Fatal("no refusal counted")
	}

	// b leaves: a, still at its set rate, gets b's part too only when the
	// rates are left to the equal split; its own set rate is kept.
	_ = b.c.Close()
	testrun.Eventually(t, testrun.WaitLimit, "b gone", func() bool { return len(st.Edges()) == 1 })
	if _, ok := st.RepairedBytes()[1]; ok {
		t.Fatal("RepairedBytes lists an edge that left")
	}
	st.SetRepairRates(nil)
	alone := float64(ask(a)[0])
	t.Logf("a alone: %.0f B", alone)
	if alone < ra*1.1 || alone > limit(total) {
		t.Fatalf("a alone repaired %.0f B over the window, with b %.0f B: b's share not freed", alone, ra)
	}
	h.EndStream(stream)
}

// askAll NACKs seqs 0..n-1 and waits until each is answered (repaired or
// refused); safe off the test's goroutine.
func (e *edge) askAll(ssrc uint32, n int) error {
	e.mu.Lock()
	want := e.repaired + e.refused + n
	e.mu.Unlock()
	seqs := make([]uint16, n)
	for i := range seqs {
		seqs[i] = uint16(i)
	}
	if err := e.c.Nack(ssrc, seqs); err != nil {
		return err
	}
	for deadline := time.Now().Add(testrun.WaitLimit); ; time.Sleep(2 * time.Millisecond) {
		e.mu.Lock()
		done := e.repaired+e.refused >= want
		e.mu.Unlock()
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d NACKs not answered within %v", n, testrun.WaitLimit)
		}
	}
}
