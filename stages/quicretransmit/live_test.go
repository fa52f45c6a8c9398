package quicretransmit

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/repair"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// edge is a repair client and what it was answered.
type edge struct {
	c                 *repair.Client
	mu                sync.Mutex
	repaired, refused int
}

func dialEdge(t *testing.T, addr, token string) *edge {
	t.Helper()
	e := &edge{}
	c, err := repair.Dial(repair.ClientConfig{
		Addr: addr, Token: token,
		OnRepair: func(uint32, uint16, []byte) { e.mu.Lock(); e.repaired++; e.mu.Unlock() },
		OnRefused: func(_ uint32, seqs []uint16) {
			e.mu.Lock()
			e.refused += len(seqs)
			e.mu.Unlock()
		},
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	e.c = c
	return e
}

func (e *edge) connected(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testrun.WaitLimit)
	defer cancel()
	if err := e.c.WaitConnected(ctx); err != nil {
		t.Fatalf("edge not connected: %v (last error %v)", err, e.c.LastError())
	}
}

func (e *edge) refusedAuth(t *testing.T) {
	t.Helper()
	testrun.Eventually(t, testrun.WaitLimit, "the edge refused as unauthorized", func() bool {
		return errors.Is(e.c.LastError(), repair.ErrUnauthorized)
	})
	if e.c.Connected() {
		t.Fatal("an edge with the old token is connected")
	}
}

// nack asks for n packets from seq from and returns how many were repaired
// once all are answered.
func (e *edge) nack(t *testing.T, ssrc uint32, from, n int) int {
	t.Helper()
	e.mu.Lock()
	rep0, ref0 := e.repaired, e.refused
	e.mu.Unlock()
	seqs := make([]uint16, n)
	for i := range seqs {
		seqs[i] = uint16(from + i)
	}
	if err := e.c.Nack(ssrc, seqs); err != nil {
		t.Fatal(err)
	}
	testrun.Eventually(t, testrun.WaitLimit, "every NACKed packet answered", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.repaired-rep0+e.refused-ref0 == n
	})
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.repaired - rep0
}

// A reload that changes token and max_rate while an edge is connected: the
// edge keeps its connection (it connected once) and gets the new rate from
// its next request; a new edge with the old token is refused, one with the
// new token admitted. Invalid values and a non-live change are refused and
// leave the stage as it was.
func TestReconfigureTokenAndRate(t *testing.T) {
	def, ok := core.Default.Lookup("quic-retransmit")
	if !ok {
		t.Fatal("quic-retransmit is not registered")
	}
	logs := &testrun.LogBuffer{}
	env := core.TestEnv("quic-retransmit")
	env.Log = slog.New(slog.NewTextHandler(logs, nil))
	raw := map[string]any{"listen": "127.0.0.1:0", "token": "old", "max_rate": int64(0)}
	st, err := def.Build(raw, env)
	if err != nil {
		t.Fatal(err)
	}
	h := stagetest.Start(t, st, env, false)
	addr := st.(*Stage).Addr().String()
	const ssrc = 0x77
	stream := h.StartStream("live/a")
	for i := 0; i < 600; i++ {
		h.SendData(stream, 0, 0, rtpPacket(uint16(i), ssrc, 1188))
	}
	h.Out.WaitData(600, testrun.WaitLimit)

	early := dialEdge(t, addr, "old")
	early.connected(t)
	if got := early.nack(t, ssrc, 0, 200); got != 200 {
		t.Fatalf("before the reload: repaired %d of 200", got)
	}

	if err := def.Reconfigure(st, map[string]any{"listen": "127.0.0.1:0", "token": "rotated-tok-2", "max_rate": int64(10_000)}); err != nil {
		t.Fatalf("reconfigure: %v", err)
	}
	// 10 kB/s allows a 64 KiB burst: about 54 packets of 1200 B.
	if got := early.nack(t, ssrc, 200, 200); got < 50 || got > 60 {
		t.Fatalf("connected edge after max_rate 10000: repaired %d of 200, want about 54", got)
	}
	dialEdge(t, addr, "old").refusedAuth(t)
	dialEdge(t, addr, "rotated-tok-2").connected(t)
	if !early.c.Connected() {
		t.Fatal("the connected edge lost its connection")
	}

	for _, bad := range []map[string]any{
		{"listen": "127.0.0.1:0", "token": strings.Repeat("x", 300), "max_rate": int64(0)},
		{"listen": "127.0.0.1:0", "token": "old", "max_rate": int64(-1)},
		{"listen": "127.0.0.1:0", "token": "old", "max_rate": "fast"},
	} {
		if err := def.Reconfigure(st, bad); err == nil {
			t.Fatalf("reconfigure with %v accepted", bad)
		}
	}
	err = def.Reconfigure(st, map[string]any{"listen": "127.0.0.1:0", "token": "old", "cache_packets": int64(100)})
	if !errors.Is(err, core.ErrNotLive) {
		t.Fatalf("a change to cache_packets: %v, want ErrNotLive", err)
	}
	// Still the new token and 10 kB/s: the old token is refused, and the
	// edge's bucket, drained above, has earned little since.
	dialEdge(t, addr, "old").refusedAuth(t)
	if got := early.nack(t, ssrc, 400, 200); got > 60 {
		t.Fatalf("max_rate changed by a refused reconfigure: repaired %d of 200", got)
	}
	if n := strings.Count(logs.String(), "repair peer connected"); n != 2 {
		t.Fatalf("%d peer connections, want 2 (the early edge once, the new one)", n)
	}
	if strings.Contains(logs.String(), "rotated-tok-2") {
		t.Fatal("the token was logged")
	}
	h.EndStream(stream)
}
