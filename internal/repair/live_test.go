package repair

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
)

// A bucket retuned while in use: lowering clips what it holds to the new
// burst at once, raising refills at the new rate from then on without a
// windfall, and the first tune of an untuned bucket fills it.
func TestBucketTune(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var b bucket
	b.tune(1<<20, t0) // burst 256 KiB, full
	if b.tokens != 256<<10 || b.rate != 1<<20 {
		t.Fatalf("untuned bucket: %+v", b)
	}
	b.tune(10_000, t0) // burst 64 KiB
	if b.tokens != 64<<10 || b.burst != 64<<10 {
		t.Fatalf("lowered: %+v, want 64 KiB held", b)
	}
	if !b.take(64<<10, t0) || b.take(1, t0) {
		t.Fatalf("lowered bucket does not hold exactly its burst: %+v", b)
	}
	// Half a second at 10 kB/s earns 5000 bytes; raising keeps those and
	// refills at the new rate from then on.
	t1 := t0.Add(500 * time.Millisecond)
	b.tune(1_000_000, t1)
	if b.tokens != 5000 {
		t.Fatalf("raised: %v tokens, want the 5000 earned before", b.tokens)
	}
	if !b.take(105_000, t1.Add(100*time.Millisecond)) {
		t.Fatalf("raised rate not applied: %+v", b)
	}
	b.tune(1_000_000, t1) // unchanged: a no-op
	if b.rate != 1_000_000 {
		t.Fatal(b.rate)
	}
}

// nackAll asks for seqs and waits until each is answered, repaired or
// refused, returning how many were repaired.
func nackAll(t *testing.T, c *Client, r *replies, seqs []uint16) int {
	t.Helper()
	r.mu.Lock()
	before, refusedBefore := len(r.repaired), len(r.refused)
	r.mu.Unlock()
	if err := c.Nack(1, seqs); err != nil {
		t.Fatal(err)
	}
	r.wait(t, "all answered", func() bool {
		return len(r.repaired)-before+len(r.refused)-refusedBefore == len(seqs)
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.repaired) - before
}

func seqRange(from, n int) []uint16 {
	s := make([]uint16, n)
	for i := range s {
		s[i] = uint16(from + i)
	}
	return s
}

// SetMaxRate applies to a peer already connected, from its next request:
// unlimited, then 10 kB/s (a 64 KiB burst: about 54 packets of 1200 B
// out of 200), then unlimited again; the peer never reconnects.
func TestSetMaxRateAppliesToConnected(t *testing.T) {
	srv := startServer(t, ServerConfig{})
	ring := srv.Stream(1, core.NewStream("live/a"))
	for i := 0; i < 600; i++ {
		ring.Insert(uint16(i), pkt(uint16(i), 1, 1188))
	}
	r := newReplies()
	c := dial(t, r.config(srv.Addr().String(), ""))
	connected(t, c)
	sess := c.session()
	if got := nackAll(t, c, r, seqRange(0, 200)); got != 200 {
		t.Fatalf("unlimited: repaired %d of 200", got)
	}
	if err := srv.SetMaxRate(10_000); err != nil {
		t.Fatal(err)
	}
	if got := nackAll(t, c, r, seqRange(200, 200)); got < 50 || got > 60 {
		t.Fatalf("after lowering max_rate: repaired %d of 200, want about 54", got)
	}
	if err := srv.SetMaxRate(0); err != nil {
		t.Fatal(err)
	}
	if got := nackAll(t, c, r, seqRange(400, 200)); got != 200 {
		t.Fatalf("after lifting max_rate: repaired %d of 200", got)
	}
	if c.session() != sess {
		t.Fatal("the peer reconnected")
	}
	if err := srv.SetMaxRate(-1); err == nil {
		t.Fatal("a negative rate was accepted")
	}
}

// SetToken rotates the token: a peer connected with the old one keeps its
// connection and its repairs, a new peer with the old token is refused and
// one with the new token is admitted; too long a token is refused and
// changes nothing.
func TestSetTokenKeepsConnectedPeers(t *testing.T) {
	srv := startServer(t, ServerConfig{Token: "old"})
	ring := srv.Stream(1, core.NewStream("live/a"))
	for i := 0; i < 10; i++ {
		ring.Insert(uint16(i), pkt(uint16(i), 1, 100))
	}
	addr := srv.Addr().String()
	r := newReplies()
	early := dial(t, r.config(addr, "old"))
	connected(t, early)
	sess := early.session()
	if err := srv.SetToken("new"); err != nil {
		t.Fatal(err)
	}

	late := dial(t, newReplies().config(addr, "old"))
	deadline := time.Now().Add(5 * time.Second)
	for !errors.Is(late.LastError(), ErrUnauthorized) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !errors.Is(late.LastError(), ErrUnauthorized) || late.Connected() {
		t.Fatalf("old token after rotation: connected %v, last error %v", late.Connected(), late.LastError())
	}
	connected(t, dial(t, newReplies().config(addr, "new")))

	if got := nackAll(t, early, r, seqRange(0, 10)); got != 10 || early.session() != sess {
		t.Fatalf("peer admitted before the rotation: repaired %d of 10, same session %v", got, early.session() == sess)
	}

	if err := srv.SetToken(string(make([]byte, 300))); err == nil {
		t.Fatal("an over-long token was accepted")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := dial(t, newReplies().config(addr, "new")).WaitConnected(ctx); err != nil {
		t.Fatalf("the token changed after a refused SetToken: %v", err)
	}
}
