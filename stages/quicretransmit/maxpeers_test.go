package quicretransmit

import (
	"context"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/repair"
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
