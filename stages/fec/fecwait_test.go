package fec

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/stagetest"
	_ "github.com/mediapipe/mediapipe/stages/quicretransmit"
)

// sourceTap counts the source (non-parity) RTP packets passing it.
type sourceTap struct{ n atomic.Int64 }

func (c *sourceTap) Run(_ context.Context, in <-chan *core.Packet, out core.Output) error {
	for p := range in {
		if p.Event == core.EventData && len(p.Data) > 1 && p.Data[1]&0x7f != 101 {
			c.n.Add(1)
		}
		out.Emit(p)
	}
	return nil
}

// chainOf runs built stages one after the other, as a pipeline does, and
// returns what the last one emits.
func chainOf(t *testing.T, stages []core.Stage, send func(in chan<- *core.Packet)) []stagetest.Captured {
	t.Helper()
	chans := make([]chan *core.Packet, len(stages))
	for i := range chans {
		chans[i] = make(chan *core.Packet, 64)
	}
	out := stagetest.NewCollector()
	var wg sync.WaitGroup
	for i, st := range stages {
		var o core.Output = out
		if i+1 < len(chans) {
			o = chanEmit(chans[i+1])
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := st.Run(context.Background(), chans[i], o); err != nil {
				t.Errorf("stage %d: %v", i, err)
			}
			if i+1 < len(chans) {
				close(chans[i+1])
			}
		}()
	}
	send(chans[0])
	close(chans[0])
	wg.Wait()
	return out.Packets()
}

type chanEmit chan *core.Packet

func (c chanEmit) Emit(p *core.Packet) { c <- p }

// TestRepairOnlyWhatFECCannot: the cloud's chain (rtp-fragmenter,
// quic-retransmit, fec-encoder) feeds an edge's (5 % loss, fec-decoder,
// rtp-reorder asking that quic-retransmit for repair) at a live pace.
// With parity, rtp-reorder asks only for what FEC could not rebuild; with
// none, it asks for every loss at once, as without FEC. Either way every
// tag comes out whole and in order.
func TestRepairOnlyWhatFECCannot(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	// onMetaData first: the edge sees the stream from its start.
	tags := [][]byte{flv.AppendTag(nil, flv.TypeScript, 0, append([]byte{2, 0, 10}, "onMetaData"...))}
	for i := 1; i < 800; i++ {
		b := make([]byte, 600+rng.IntN(2400))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		tags = append(tags, flv.AppendTag(nil, []uint8{flv.TypeAudio, flv.TypeVideo}[i%2], uint32(i*3), b))
	}
	for _, c := range []struct {
		name     string
		overhead float64
	}{{"parity", 0.125}, {"no_parity", 0}} {
		t.Run(c.name, func(t *testing.T) {
			envs := map[string]*core.Env{}
			build := func(name string, raw map[string]any) core.Stage {
				env := core.TestEnv(name)
				envs[name] = env
				return stagetest.Build(t, name, raw, env)
			}
			frag := build("rtp-fragmenter", nil)
			cloud := build("quic-retransmit", map[string]any{"listen": "127.0.0.1:0", "token": "t0k", "max_rate": int64(0)})
			if err := cloud.(core.Opener).Open(context.Background()); err != nil {
				t.Fatal(err)
			}
			addr := cloud.(interface{ Addr() net.Addr }).Addr().String()
			enc := build("fec-encoder", map[string]any{"policy": "static", "overhead": c.overhead, "group": int64(16), "max_wait": "40ms"})
			var sent, came sourceTap
			lossy := build("netsim", map[string]any{"drop": 0.05, "seed": int64(7)})
			dec := build("fec-decoder", nil)
			reorder := build("rtp-reorder", map[string]any{"retransmit": addr, "token": "t0k", "latency": "150ms"})
			reasm := build("flv-reassembler", nil)
			got := chainOf(t, []core.Stage{frag, cloud, enc, &sent, lossy, &came, dec, reorder, reasm}, func(in chan<- *core.Packet) {
				s := core.NewStream("live/fecwait")
				in <- core.NewEvent(core.EventStart, s)
				// A live pace: about 4 Mbit/s, a tag every 3 ms.
				tick := time.NewTicker(3 * time.Millisecond)
				defer tick.Stop()
				for _, tg := range tags {
					<-tick.C
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
			if len(data) != len(tags) {
				t.Errorf("%d of %d tags came out", len(data), len(tags))
			}
			for i := range min(len(data), len(tags)) {
				if !bytes.Equal(data[i], tags[i]) {
					t.Fatalf("tag %d differs from its source", i)
				}
			}
			rm := envs["rtp-reorder"].Metrics
			if g := rm.Drop("gap_skipped").Value(); g != 0 {
				t.Errorf("rtp-reorder skipped %v gaps", g)
			}
			lost := sent.n.Load() - came.n.Load()
			rebuilt := int64(core.CounterValue(envs["fec-decoder"].Metrics.Counter("fec_recovered")))
			asked := int64(core.CounterValue(rm.Counter("nacks_sent")))
			repaired := int64(core.CounterValue(rm.Counter("repaired")))
			t.Logf("source packets %d, lost %d, rebuilt %d, asked %d, repaired %d", sent.n.Load(), lost, rebuilt, asked, repaired)
			if lost < 50 {
				t.Fatalf("only %d source packets lost: the test shows nothing", lost)
			}
			if c.overhead == 0 {
				// Every loss asked for (and the probes past the end).
				if rebuilt != 0 || asked < lost {
					t.Errorf("no parity: asked %d for %d lost (%d rebuilt)", asked, lost, rebuilt)
				}
				return
			}
			// What FEC could not rebuild, plus the probes past the end and
			// a few asked before parity came (the first group's, or a hold
			// that ran out on a busy machine): asking at once, as before,
			// asks for every loss.
			slack := 4 + lost/5
			if rebuilt < lost/2 || asked > lost-rebuilt+slack {
				t.Errorf("asked %d for %d lost of which %d rebuilt: want at most %d", asked, lost, rebuilt, lost-rebuilt+slack)
			}
		})
	}
}
