package quicretransmit

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/repair"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// max_peers reaches the server: the edge over the cap is refused and
// counted as refused_peers.
func TestMaxPeersThroughStage(t *testing.T) {
	s := build(t, map[string]any{"listen": "127.0.0.1:0", "max_peers": int64(1)})
	h := stagetest.Start(t, s, s.env, false)
	dial := func() *repair.Client {
		c, err := repair.Dial(repair.ClientConfig{Addr: s.Addr().String(), MinBackoff: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	first := dial()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := first.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	second := dial()
	deadline := time.Now().Add(5 * time.Second)
	for h.Env.Metrics.Drop("refused_peers").Value() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("second edge not refused")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if second.Connected() {
		t.Fatal("second edge connected beyond max_peers = 1")
	}
	if v := core.CounterValue(h.Env.Metrics.Counter("requests")); v != 0 {
		t.Fatalf("requests %v", v)
	}
}

// Junk on the repair port and peers evicted before their HELLO show in the
// stage's drop counters.
func TestJunkAndEvictionsCounted(t *testing.T) {
	s := build(t, map[string]any{"listen": "127.0.0.1:0"})
	h := stagetest.Start(t, s, s.env, false)
	u, err := net.Dial("udp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	// Junk goes on until 100 are counted: on a loaded machine the kernel may
	// drop some of a burst before the server reads them, uncounted by it.
	sent := 0
	testrun.Eventually(t, testrun.WaitLimit, "junk counted", func() bool {
		for range 20 {
			_, _ = u.Write([]byte{0x00, byte(sent), 1, 2, 3}) // not QUIC: the fixed bit is clear
			sent++
		}
		return h.Env.Metrics.Drop("junk").Value() >= 100
	})
	if got := h.Env.Metrics.Drop("junk").Value(); got > float64(sent) {
		t.Fatalf("junk counted %v of %d sent", got, sent)
	}
	// More silent peers from one address than it may have waiting: the
	// oldest are evicted, and counted.
	tc, _ := repair.ClientTLS("", "localhost")
	over := repair.DefaultMaxUnauthenticated/8 + 2
	for range over {
		ctx, cancel := context.WithTimeout(context.Background(), testrun.WaitLimit)
		conn, err := quic.DialAddr(ctx, s.Addr().String(), tc, &quic.Config{})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		defer conn.CloseWithError(0, "")
	}
	testrun.Eventually(t, testrun.WaitLimit, "evictions counted", func() bool { return h.Env.Metrics.Drop("evicted_unauth").Value() >= 2 })
}
