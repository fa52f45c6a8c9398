package repair

import (
	"testing"
	"time"
)

// The shared budget: equal parts among the connected peers, the rates the
// controller set and an equal part of the rest (at least total / peers) for
// the others, recomputed as peers come and go; a leaving peer's rate is
// freed, not inherited by the next peer in its slot. A peer's limit is the
// lower of max rate and share.
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
	s.SetShares(map[int]int{a.slot: 500, b.slot: 100, 7: 100}) // slot 7 is nobody: ignored
	want("set", map[*edgeReports]int64{a: 500, b: 100, c: 300})
	s.dropEdge(b)
	want("b left", map[*edgeReports]int64{a: 450, c: 450}) // c's floor is 900/2
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

// The controller hands out the whole total (shares summing to 1): a peer
// that connects before its next round still gets a floor of total / peers
// and is repaired, the set rates making room in proportion; set rates over
// the total (a policy answering 1 for everyone, a reload lowering the
// total) are scaled to fit it.
func TestSharesFitTotal(t *testing.T) {
	s, err := NewServer(ServerConfig{Addr: "127.0.0.1:0", TotalRate: 1200})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	edges := []*edgeReports{s.addEdge("a", now), s.addEdge("b", now)}
	check := func(step string, want ...int64) {
		t.Helper()
		var sum int64
		for i, e := range edges {
			got := e.share.Load()
			sum += got
			if got != want[i] {
				t.Fatalf("%s: edge %s share %d, want %d", step, e.addr, got, want[i])
			}
		}
		if total := int64(s.TotalRate()); sum > total {
			t.Fatalf("%s: shares add up to %d, over the total %d", step, sum, total)
		}
	}
	a, b := edges[0], edges[1]
	s.SetShares(map[int]int{a.slot: 900, b.slot: 300}) // the whole total
	check("round", 900, 300)

	c := s.addEdge("c", now) // between rounds
	edges = append(edges, c)
	check("c joined", 600, 200, 400)
	p := &peer{rate: &s.maxRate, edge: c}
	if !p.take(100, now) {
		t.Fatal("the newcomer is refused its first repair")
	}

	s.SetShares(map[int]int{a.slot: 1200, b.slot: 1200, c.slot: 1200}) // "1 for everyone"
	check("everyone 1", 400, 400, 400)
	s.SetShares(map[int]int{a.slot: 1200, b.slot: 600, c.slot: 600})
	check("over, uneven", 600, 300, 300)
	if err := s.SetTotalRate(600); err != nil { // a reload lowers the total
		t.Fatal(err)
	}
	check("total lowered", 300, 150, 150)
	s.SetShares(map[int]int{a.slot: 0, b.slot: 100, c.slot: 200}) // under the total: kept
	check("under", 0, 100, 200)
}
