package fec

import (
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/stagetest"
)

// BenchmarkEncoder is the encoder's cost per source packet (1192-byte
// packets, groups of 16 with 4 parity), parity included.
func BenchmarkEncoder(b *testing.B) {
	env := core.TestEnv("fec-encoder")
	env.Clock = stagetest.NewFakeClock(time.Unix(0, 0))
	var cfg EncoderConfig
	stagetest.Decode(b, "fec-encoder", nil, &cfg)
	st, _ := NewEncoder(&cfg, env)
	e := st.(*Encoder)
	e.out, e.timer = stagetest.Discard{}, env.Clock.NewTimer(time.Hour)
	stream := core.NewStream("live/bench")
	e.handle(core.NewEvent(core.EventStart, stream))
	pkt := source(0, 0, 1180)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		p := core.NewPacket(len(pkt))
		copy(p.Data, pkt)
		p.Data[2], p.Data[3] = byte(i>>8), byte(i)
		p.Stream = stream
		e.handle(p)
	}
}

// BenchmarkDecoder is the decoder's cost per packet on the wire (1192-byte
// sources, groups of 16 with 2 parity), with no loss and with one source
// per group lost and recovered. The stream is the whole 16-bit sequence
// space, so replaying it is one continuous stream. A recovery costs
// reedsolomon's ReconstructData about five small allocations of its own
// (per group recovered, not per packet).
func BenchmarkDecoder(b *testing.B) {
	src := make([][]byte, 1<<16)
	for i := range src {
		src[i] = source(0, i, 1180)
	}
	sent := encode(b, 16, 0.125, src)
	src = nil
	for _, bc := range []struct {
		name string
		lose bool
	}{{"no_loss", false}, {"1_in_16_lost", true}} {
		b.Run(bc.name, func(b *testing.B) {
			var wire [][]byte
			for i, p := range sent {
				if !bc.lose || i%18 != 3 { // groups are 18 on the wire
					wire = append(wire, p.Data)
				}
			}
			var cfg DecoderConfig
			stagetest.Decode(b, "fec-decoder", nil, &cfg)
			st, _ := NewDecoder(&cfg, core.TestEnv("fec-decoder"))
			d := st.(*Decoder)
			d.out = stagetest.Discard{}
			stream := core.NewStream("live/bench")
			d.handle(core.NewEvent(core.EventStart, stream))
			feed := func(b []byte) {
				p := core.NewPacket(len(b))
				copy(p.Data, b)
				p.Stream = stream
				d.handle(p)
			}
			for _, w := range wire { // warm: ring slots, scratch and codecs made
				feed(w)
			}
			warm := core.CounterValue(d.recovered)
			b.SetBytes(1192)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				feed(wire[i%len(wire)])
			}
			b.ReportMetric((core.CounterValue(d.recovered)-warm)/float64(b.N), "recovered/op")
		})
	}
}
