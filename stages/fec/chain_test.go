package fec

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/stagetest"
	_ "github.com/mediapipe/mediapipe/stages/flvreassembler"
	_ "github.com/mediapipe/mediapipe/stages/netsim"
	_ "github.com/mediapipe/mediapipe/stages/rtpfragmenter"
	_ "github.com/mediapipe/mediapipe/stages/rtpreorder"
)

// TestChainRecoversWithoutRepair: FLV tags cut into RTP, parity added,
// packets lost on the way, and no repair at all (rtp-reorder without
// retransmit): the decoder recovers every lost packet and every tag
// comes out whole and in order.
func TestChainRecoversWithoutRepair(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var tags [][]byte
	for i := 0; i < 1500; i++ {
		n := rng.IntN(3000)
		if i%100 == 0 {
			n = 60_000 // a keyframe: 51 packets
		}
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		tags = append(tags, flv.AppendTag(nil, []uint8{flv.TypeAudio, flv.TypeVideo}[i%2], uint32(i*20), b))
	}
	// Seeded losses the overhead can cover: a group losing more than its
	// parity (or a stream's very first packet, recovered only after
	// rtp-reorder has started past it) is left to repair, which this
	// chain has not.
	cases := []struct {
		name     string
		overhead float64
		netsim   map[string]any
	}{
		{"5pct_random", 0.4, map[string]any{"drop": 0.05, "seed": int64(1)}},
		{"3pct_bursts_of_5", 0.5, map[string]any{"drop": 0.03, "burst": int64(5), "seed": int64(1)}},
		{"reorder_and_duplicates", 0.2, map[string]any{"drop": 0.02, "duplicate": 0.02, "reorder": 0.05, "seed": int64(1)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, envs := stagetest.RunChain(t, []stagetest.ChainStage{
				{Name: "rtp-fragmenter", Raw: nil},
				// max_wait well beyond the test's run: groups close by count,
				// so the seeded loss hits the same packets on every run
				{Name: "fec-encoder", Raw: map[string]any{"overhead": c.overhead, "group": int64(10), "max_wait": "1s"}},
				{Name: "netsim", Raw: c.netsim},
				{Name: "fec-decoder", Raw: nil},
				{Name: "rtp-reorder", Raw: map[string]any{"latency": "200ms"}},
				{Name: "flv-reassembler", Raw: nil},
			}, func(in chan<- *core.Packet) {
				s := core.NewStream("live/fec")
				in <- core.NewEvent(core.EventStart, s)
				for _, tg := range tags {
					p := core.NewPacket(len(tg))
					copy(p.Data, tg)
					p.Stream, p.Type = s, tg[0]
					in <- p
				}
				in <- core.NewEvent(core.EventEnd, s)
			})
			var data [][]byte
			for _, p := range got {
				if p.Event == core.EventData {
					data = append(data, p.Data)
				}
			}
			for _, n := range []string{"netsim", "fec-decoder", "rtp-reorder", "flv-reassembler"} {
				t.Logf("%s drops: %v", n, envs[n].Metrics.Drops())
			}
			if len(data) != len(tags) {
				t.Errorf("%d of %d tags came out", len(data), len(tags))
			}
			for i := range min(len(data), len(tags)) {
				if !bytes.Equal(data[i], tags[i]) {
					t.Fatalf("tag %d differs from its source", i)
				}
			}
			lost := envs["netsim"].Metrics.Drop("simulated_loss").Value()
			dec := envs["fec-decoder"].Metrics
			rec := core.CounterValue(dec.Counter("fec_recovered"))
			if rec == 0 || lost == 0 {
				t.Errorf("netsim lost %v, the decoder recovered %v", lost, rec)
			}
			if u := dec.Drop("fec_unrecoverable").Value(); u != 0 {
				t.Errorf("%v packets unrecoverable", u)
			}
			if g := envs["rtp-reorder"].Metrics.Drop("gap_skipped").Value(); g != 0 {
				t.Errorf("rtp-reorder skipped %v gaps", g)
			}
			t.Logf("lost %v (source and parity), recovered %v, parity sent %v", lost, rec,
				core.CounterValue(envs["fec-encoder"].Metrics.Counter("fec_parity_sent")))
		})
	}
}
