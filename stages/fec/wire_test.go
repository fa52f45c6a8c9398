package fec

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/fecparity"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/testrun"
	_ "github.com/mediapipe/mediapipe/stages/udpsink"
	"github.com/mediapipe/mediapipe/stages/udpsource"
)

// overWire sends tags through rtp-fragmenter → fec-encoder → udp-sink →
// (loopback UDP) → udp-source with raw, and returns what udp-source
// emitted and its env.
func overWire(t *testing.T, tags [][]byte, raw map[string]any) ([]stagetest.Captured, *core.Env) {
	t.Helper()
	raw["listen"] = "127.0.0.1:0"
	env := core.TestEnv("udp-source")
	st := stagetest.Build(t, "udp-source", raw, env)
	src := stagetest.Start(t, st, env, true)
	addr := st.(*udpsource.Stage).Addr().String()
	stagetest.RunChain(t, []stagetest.ChainStage{
		{Name: "rtp-fragmenter", Raw: nil},
		{Name: "fec-encoder", Raw: map[string]any{"overhead": 0.4, "group": int64(10), "max_wait": "1s"}},
		{Name: "udp-sink", Raw: map[string]any{"destinations": []any{addr}}},
	}, func(in chan<- *core.Packet) {
		s := core.NewStream("live/wire")
		in <- core.NewEvent(core.EventStart, s)
		sent := 0
		for _, tg := range tags {
			p := core.NewPacket(len(tg))
			copy(p.Data, tg)
			p.Stream, p.Type = s, tg[0]
			in <- p
			sent += (len(tg) + 1179) / 1180
			src.Out.WaitData(sent-512, 5*time.Second) // within the socket buffer
		}
		in <- core.NewEvent(core.EventEnd, s)
	})
	testrun.Eventually(t, 5*time.Second, "the stream's end at the edge", func() bool {
		ps := src.Out.Packets()
		return len(ps) > 0 && ps[len(ps)-1].Event == core.EventEnd
	})
	return src.Out.Packets(), env
}

// replay feeds captured packets into a chain of edge stages.
func replay(t *testing.T, got []stagetest.Captured, stages []stagetest.ChainStage) ([]stagetest.Captured, map[string]*core.Env) {
	return stagetest.RunChain(t, stages, func(in chan<- *core.Packet) {
		for _, c := range got {
			var p *core.Packet
			if c.Event != core.EventData {
				p = core.NewEvent(c.Event, c.Stream)
			} else {
				p = core.NewPacket(len(c.Data))
				copy(p.Data, c.Data)
				p.Stream, p.Timestamp = c.Stream, c.Timestamp
			}
			in <- p
		}
	})
}

// TestOverTheWire: parity crosses udp-sink and udp-source on loopback. An
// edge with fec_payload_type and fec-decoder recovers what netsim drops,
// without repair; an edge without them drops the parity at udp-source
// (counted) and plays the lossless stream unchanged.
func TestOverTheWire(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var tags [][]byte
	for i := range 600 {
		n := rng.IntN(3000)
		if i%100 == 0 {
			n = 60_000
		}
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		tags = append(tags, flv.AppendTag(nil, []uint8{flv.TypeAudio, flv.TypeVideo}[i%2], uint32(i*20), b))
	}
	check := func(t *testing.T, out []stagetest.Captured) {
		t.Helper()
		var data [][]byte
		for _, p := range out {
			if p.Event == core.EventData {
				data = append(data, p.Data)
			}
		}
		if len(data) != len(tags) {
			t.Fatalf("%d of %d tags came out", len(data), len(tags))
		}
		for i := range tags {
			if !bytes.Equal(data[i], tags[i]) {
				t.Fatalf("tag %d differs from its source", i)
			}
		}
	}
	t.Run("with_decoder", func(t *testing.T) {
		got, srcEnv := overWire(t, tags, map[string]any{"fec_payload_type": int64(101)})
		if n := srcEnv.Metrics.Drop("parity_no_stream").Value() + srcEnv.Metrics.Drop("bad_payload_type").Value(); n != 0 {
			t.Errorf("udp-source dropped %v parity packets", n)
		}
		out, envs := replay(t, got, []stagetest.ChainStage{
			{Name: "netsim", Raw: map[string]any{"drop": 0.05, "seed": int64(1)}},
			{Name: "fec-decoder", Raw: nil},
			{Name: "rtp-reorder", Raw: map[string]any{"latency": "200ms"}},
			{Name: "flv-reassembler", Raw: nil},
		})
		check(t, out)
		if rec := core.CounterValue(envs["fec-decoder"].Metrics.Counter("fec_recovered")); rec == 0 {
			t.Error("nothing recovered")
		}
		if n := envs["rtp-reorder"].Metrics.Drop("other_payload_type").Value(); n != 0 {
			t.Errorf("parity reached rtp-reorder: %v", n)
		}
	})
	t.Run("without_decoder", func(t *testing.T) {
		got, srcEnv := overWire(t, tags, map[string]any{})
		if n := srcEnv.Metrics.Drop("bad_payload_type").Value(); n == 0 {
			t.Error("no parity counted as dropped at udp-source")
		}
		out, _ := replay(t, got, []stagetest.ChainStage{
			{Name: "rtp-reorder", Raw: map[string]any{"latency": "200ms"}},
			{Name: "flv-reassembler", Raw: nil},
		})
		check(t, out)
	})
}

// fecparity.Is, the check udp-sink and rtp-reorder use, knows parity by its
// header and SSRC relation whatever its payload type, agrees with the
// decoder's parser, and takes no source packet, nor parity whose SSRC is
// not tied to its protected SSRC's.
func TestParityCheck(t *testing.T) {
	for _, pt := range []uint8{96, 101, 127} {
		for _, l := range []int{shardPrefix + rtpHeader, 40, MaxShard} {
			b := make([]byte, parityHead+l)
			putParityHeader(b, pt, 7, 0, 0x1234, 100, 10, 2, 1, l)
			if _, ok := parseParity(b, pt); !ok || !fecparity.Is(b) {
				t.Fatalf("parity of payload type %d, shard %d: parsed %v, recognised %v", pt, l, ok, fecparity.Is(b))
			}
			b[11] ^= 1 // its own SSRC no longer tied to the protected one
			if fecparity.Is(b) {
				t.Fatal("parity with an unrelated SSRC recognised")
			}
		}
	}
	if fecparity.SSRCMask != paritySSRCMask {
		t.Fatal("fecparity's SSRC mask differs from the encoder's")
	}
	for _, n := range []int{0, 11, 12, 40, 1200} {
		if fecparity.Is(source(0, 5, n)) {
			t.Fatalf("a source packet of %d bytes taken for parity", n)
		}
	}
}
