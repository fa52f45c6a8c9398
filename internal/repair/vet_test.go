package repair

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// With VetSSRCs a client sends no NACK for an SSRC the server does not
// know, says so (ErrUnknownSSRC), and asks again after a back-off, so a
// stream the server starts later is repaired.
func TestVetSSRCs(t *testing.T) {
	srv := startServer(t, ServerConfig{CachePackets: 100})
	ring := srv.Stream(0xabc, core.NewStream("live/a"))
	for q := range uint16(10) {
		ring.Insert(q, pkt(q, 0xabc, 100))
	}
	srv.Stream(0x777, core.NewStream("live/ended"))
	srv.EndStream(0x777) // not listed by STREAMS, known by INIT
	r := newReplies()
	cfg := r.config(srv.Addr().String(), "")
	cfg.VetSSRCs = true
	var mu sync.Mutex
	var known []uint32
	cfg.OnKnown = func(ssrc uint32) {
		mu.Lock()
		known = append(known, ssrc)
		mu.Unlock()
	}
	c := dial(t, cfg)
	connected(t, c)

	for _, ssrc := range []uint32{0xabc, 0x777, 0x999} {
		if err := c.Nack(ssrc, []uint16{5}); !errors.Is(err, ErrChecking) {
			t.Fatalf("ssrc %#x: first NACK: %v, want ErrChecking", ssrc, err)
		}
	}
	testrun.Eventually(t, 5*time.Second, "the verdicts", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(known) == 2 && errors.Is(c.Nack(0x999, []uint16{5}), ErrUnknownSSRC)
	})
	mu.Lock()
	slices.Sort(known)
	if !slices.Equal(known, []uint32{0x777, 0xabc}) {
		t.Fatalf("known %x", known)
	}
	mu.Unlock()
	if err := c.Nack(0xabc, []uint16{5}); err != nil {
		t.Fatal(err)
	}
	r.wait(t, "the repair", func() bool { return len(r.repaired) == 1 })
	if g := srv.Stats().Get(EvGone); g != 0 {
		t.Fatalf("%d sequence numbers answered gone: a NACK for the unknown SSRC went out", g)
	}

	// The cloud starts 0x999 now: after the back-off it is asked about
	// again and repaired.
	ring9 := srv.Stream(0x999, core.NewStream("live/b"))
	ring9.Insert(6, pkt(6, 0x999, 100))
	testrun.Eventually(t, 5*time.Second, "0x999 known", func() bool { return c.Nack(0x999, []uint16{6}) == nil })
	r.wait(t, "its repair", func() bool { return len(r.repaired) == 2 })
}
