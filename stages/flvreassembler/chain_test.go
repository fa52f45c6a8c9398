package flvreassembler

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/stagetest"
	_ "github.com/mediapipe/mediapipe/stages/netsim"
	_ "github.com/mediapipe/mediapipe/stages/rtpfragmenter"
)

// runChain runs rtp-fragmenter → netsim → flv-reassembler in memory and
// returns what comes out and the reassembler's env.
func runChain(t *testing.T, netsim map[string]any, send func(in chan<- *core.Packet)) ([]stagetest.Captured, *core.Env) {
	t.Helper()
	got, envs := stagetest.RunChain(t, []stagetest.ChainStage{{Name: "rtp-fragmenter"}, {Name: "netsim", Raw: netsim}, {Name: "flv-reassembler"}}, send)
	return got, envs["flv-reassembler"]
}

// TestThroughLossyNetwork: whatever the network does, every tag that comes
// out is one that went in, whole and in order; with a clean network all do.
func TestThroughLossyNetwork(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var tags [][]byte
	for i := 0; i < 3000; i++ {
		n := rng.IntN(4000)
		if i%100 == 0 {
			n = 200_000 // a keyframe
		}
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		tags = append(tags, flv.AppendTag(nil, []uint8{flv.TypeAudio, flv.TypeVideo}[i%2], uint32(i*20), b))
	}
	cases := []struct {
		name   string
		netsim map[string]any
		minOut int
	}{
		{"clean", map[string]any{}, len(tags)},
		{"loss_10pct", map[string]any{"drop": 0.1, "seed": int64(1)}, len(tags) / 2},
		{"loss_3pct_bursts_of_5", map[string]any{"drop": 0.03, "burst": int64(5), "seed": int64(2)}, len(tags) / 2},
		{"duplicates_and_reorder", map[string]any{"duplicate": 0.05, "reorder": 0.05, "seed": int64(3)}, len(tags) / 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, env := runChain(t, c.netsim, func(in chan<- *core.Packet) {
				s := core.NewStream("live/chain")
				in <- core.NewEvent(core.EventStart, s)
				for _, tg := range tags {
					p := core.NewPacket(len(tg))
					copy(p.Data, tg)
					p.Stream, p.Type = s, tg[0]
					in <- p
				}
				in <- core.NewEvent(core.EventEnd, s)
			})
			if got[0].Event != core.EventStart || got[len(got)-1].Event != core.EventEnd {
				t.Fatal("start/end did not frame the stream")
			}
			next, n := 0, 0
			for _, p := range got[1 : len(got)-1] {
				for next < len(tags) && !bytes.Equal(p.Data, tags[next]) {
					next++
				}
				if next == len(tags) {
					t.Fatalf("output tag %d (%d bytes) is not an input tag, or is out of order", n, len(p.Data))
				}
				next++
				n++
			}
			if n < c.minOut {
				t.Errorf("%d of %d tags came through, want at least %d", n, len(tags), c.minOut)
			}
			t.Logf("%d of %d tags whole; drops: missing %v orphan %v stale %v", n, len(tags),
				env.Metrics.Drop("missing_fragment").Value(), env.Metrics.Drop("orphan_fragment").Value(), env.Metrics.Drop("stale").Value())
		})
	}
}
