package rtpreorder

import (
	"bytes"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/media/rtpheader"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/repair"
)

// endIndex is the index of st's end among the output packets, or -1.
func endIndex(c *stagetest.Collector, st *core.Stream) (int, []stagetest.Captured) {
	ps := c.Packets()
	for i, p := range ps {
		if p.Event == core.EventEnd && p.Stream == st {
			return i, ps
		}
	}
	return -1, ps
}

// waitEnd waits (in real time) for st's end to come out.
func waitEnd(t *testing.T, c *stagetest.Collector, st *core.Stream) []stagetest.Captured {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if i, ps := endIndex(c, st); i >= 0 {
			return ps[:i+1]
		}
		if time.Now().After(deadline) {
			t.Fatal("stream end never came out")
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// The BYE follows the last packets closer than a repair round trip. A gap
// among them used to be skipped at the end at once (the only gaps the bench
// saw skipped at 10 % loss), and a lost last packet went unnoticed; the end
// now waits for the repairs. The clock is fake and never advances, so only
// the cloud's answers can release the end.
func TestStreamEdgesRepaired(t *testing.T) {
	for _, tc := range []struct {
		name            string
		cached, sent    []uint16
		want            []uint16
		repaired, skips float64
	}{
		{"repaired", span(1, 6), []uint16{1, 2, 3, 5, 6}, span(1, 6), 1, 0},
		{"gone", []uint16{1, 2, 3, 5, 6}, []uint16{1, 2, 3, 5, 6}, []uint16{1, 2, 3, 5, 6}, 0, 1},
		// The last packets lost leave no gap: only asking past them finds
		// them. The probes past the stream's real end come back gone and
		// are not counted as skipped.
		{"tail lost", span(1, 6), span(1, 4), span(1, 6), 2, 0},
		{"tail and gap lost", span(1, 6), []uint16{1, 3}, span(1, 6), 4, 0},
		// Likewise the first packets: the edge asks for the few before the
		// first one it sees.
		{"head lost", span(1, 6), span(3, 4), span(1, 6), 2, 0},
		// An edge joining late gets those few as backlog.
		{"late join", span(1, 20), span(10, 11), span(6, 15), 4, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := cloud(t, "", 100)
			ring := srv.Stream(0x55, core.NewStream("live/a"))
			for _, q := range tc.cached {
				ring.Insert(q, rtpPacket(q, 0x55, 200))
			}
			s, h, _ := start(t, map[string]any{"retransmit": srv.Addr().String(), "latency": "10s"}, false)
			waitConnected(t, s)
			st := h.StartStream("live/a")
			for _, q := range tc.sent {
				h.SendData(st, 0, 0, rtpPacket(q, 0x55, 200))
			}
			h.EndStream(st)
			ps := waitEnd(t, h.Out, st)
			var got []uint16
			for _, p := range ps {
				if p.Stream == st && p.Event == core.EventData {
					got = append(got, seqOf(p.Data))
					if !bytes.Equal(p.Data, rtpPacket(seqOf(p.Data), 0x55, 200)) {
						t.Fatalf("seq %d: bytes differ", seqOf(p.Data))
					}
				}
			}
			equal(t, got, tc.want)
			barrier(t, h)
			equal(t, seqs(h, st), tc.want) // nothing after the end
			if r := core.CounterValue(s.repaired); r != tc.repaired || s.gapSkipped.Value() != tc.skips {
				t.Fatalf("repaired %v skipped %v, want %v %v", r, s.gapSkipped.Value(), tc.repaired, tc.skips)
			}
			if len(s.bySSRC) != 0 {
				t.Fatalf("%d SSRCs left", len(s.bySSRC))
			}
		})
	}
}

// With the cloud unreachable, a held end waits out latency, no longer.
func TestEndWaitsOutLatency(t *testing.T) {
	s, h, clock := start(t, map[string]any{"retransmit": "127.0.0.1:9", "latency": "30ms"}, false)
	st := h.StartStream("live/a")
	h.SendData(st, 0, 0, rtpPacket(1, 7, 20))
	h.SendData(st, 0, 0, rtpPacket(3, 7, 20))
	h.EndStream(st)
	barrier(t, h)
	if i, _ := endIndex(h.Out, st); i >= 0 {
		t.Fatal("end released while the gap is open")
	}
	clock.Advance(30 * time.Millisecond)
	ps := waitEnd(t, h.Out, st)
	var got []uint16
	for _, p := range ps {
		if p.Stream == st && p.Event == core.EventData {
			got = append(got, seqOf(p.Data))
		}
	}
	equal(t, got, []uint16{1, 3})
	if s.gapSkipped.Value() != 1 || len(s.streams) != 1 { // only the barrier stream
		t.Fatalf("skipped %v, %d streams", s.gapSkipped.Value(), len(s.streams))
	}
}

// A new stream seen from its first packet (onMetaData at time 0) with no
// loss costs the cloud no NACK: nothing came before it (issue 11: every
// new stream used to send four head probes, all answered gone), and its
// first packet is not held for them.
func TestCleanStartAsksNothing(t *testing.T) {
	srv := cloud(t, "", 100)
	ring := srv.Stream(0x66, core.NewStream("live/a"))
	meta := tagPacket(500, 0x66, flv.TypeScript, onMetaDataBody)
	pkts := [][]byte{meta}
	for q := uint16(501); q < 520; q++ {
		pkts = append(pkts, rtpPacket(q, 0x66, 100))
	}
	for _, p := range pkts {
		ring.Insert(rtpheader.Seq(p), p)
	}
	s, h, _ := start(t, map[string]any{"retransmit": srv.Addr().String(), "latency": "10s"}, false)
	waitConnected(t, s)
	st := h.StartStream("live/a")
	for _, p := range pkts {
		h.SendData(st, 0, 0, p)
	}
	h.Out.WaitData(len(pkts), 5*time.Second) // the fake clock stands still: nothing waited
	h.EndStream(st)
	waitEnd(t, h.Out, st) // the tail probes: a lost last packet leaves no gap
	if n := core.CounterValue(s.nacksSent); n != 4 {
		t.Errorf("%v NACKs sent, want only the %d tail probes", n, tailProbes)
	}
	if g := srv.Stats().Get(repair.EvGone); g != tailProbes {
		t.Errorf("the cloud answered %d gone, want only the %d tail probes", g, tailProbes)
	}
}
