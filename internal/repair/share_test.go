package repair

import (
	"testing"
	"time"
)

// The shared budget: equal parts among the connected peers, the rates the
// controller set and an equal part of the rest for the others, recomputed
// as peers come and go; a leaving peer's rate is freed, not inherited by
// the next peer in its slot. A peer's limit is the lower of max rate and
// share.
func TestShares(t *testing.T) {
	s, err := NewServer(ServerConfig{Addr: "127.0.0.1:0", TotalRate: 900, MaxRate: 500})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	a, b, c := s.addEdge("a", now), s.addEdge("b", now), s.addEdge("c", now)
	want := func(step string, w map[*edgeReports]int64) {
		t.Helper()
		for e, x := range w {
			if got := e.share.Load(); got != x {
				t.Fatalf("%s: edge %s share %d, want %d", step, e.addr, got, x)
			}
		}
	}
	want("equal", map[*edgeReports]int64{a: 300, b: 300, c: 300})
	s.SetShares(map[int]int{a.slot: 600, 7: 100}) // slot 7 is nobody: ignored
	want("set", map[*edgeReports]int64{a: 600, b: 150, c: 150})
	s.dropEdge(b)
	want("b left", map[*edgeReports]int64{a: 600, c: 300})
	s.dropEdge(a)
	want("a left: its rate is freed", map[*edgeReports]int64{c: 900})
	d := s.addEdge("d", now) // in a's slot, with an equal share, not a's 600
	if d.slot != a.slot {
		t.Fatalf("d in slot %d, want %d", d.slot, a.slot)
	}
	want("d joined", map[*edgeReports]int64{c: 450, d: 450})

	// The limit is min(max rate, share): c may burst 64 KiB at most either
	// way, then earns 450 B/s (under max_rate 500).
	p := &peer{rate: &s.maxRate, edge: c}
	if !p.take(64<<10, now) || p.take(1, now) {
		t.Fatal("the first burst is not 64 KiB")
	}
	if p.take(460, now.Add(time.Second)) || !p.take(450, now.Add(time.Second)) {
		t.Fatal("c does not earn its share of 450 B/s")
	}
	s.SetShares(map[int]int{c.slot: 0})
	if p.take(1, now.Add(time.Hour)) {
		t.Fatal("a share of 0 repaired")
	}
	if err := s.SetTotalRate(0); err != nil {
		t.Fatal(err)
	}
	want("no budget", map[*edgeReports]int64{c: -1, d: -1})
	if !p.take(500, now.Add(2*time.Hour)) || p.take(64<<10, now.Add(2*time.Hour)) {
		t.Fatal("without a budget, max_rate does not apply")
	}
	if s.SetTotalRate(-1) == nil {
		t.Fatal("a negative total rate accepted")
	}
}
