package rtpreorder

import (
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/stagetest"
)

type seqOut struct{ seqs []uint16 }

func (o *seqOut) Emit(p *core.Packet) {
	if p.Event == core.EventData {
		o.seqs = append(o.seqs, seqOf(p.Data))
	}
	p.Release()
}

// FuzzReorder drives one buffer with arbitrary arrivals and clock moves:
// it never panics, releases in strictly increasing order, and every packet
// in is either released or counted as a duplicate or late.
func FuzzReorder(f *testing.F) {
	f.Add([]byte{0, 1, 0, 2, 0, 3}, uint8(16))
	f.Add([]byte{0xff, 0xfe, 0, 1, 0xff, 0xff, 0, 0}, uint8(16))
	f.Add([]byte{0, 5, 0, 1, 0x80, 0, 0, 5, 0, 5}, uint8(40))
	f.Fuzz(func(t *testing.T, b []byte, size uint8) {
		env := core.TestEnv("rtp-reorder")
		clock := stagetest.NewFakeClock(time.Unix(0, 0))
		env.Clock = clock
		st, err := New(&Config{Latency: 10 * time.Millisecond, MaxPackets: 16 + int(size)}, env)
		if err != nil {
			t.Fatal(err)
		}
		s := st.(*Stage)
		s.timer = clock.NewTimer(time.Hour)
		out := &seqOut{}
		stream := core.NewStream("fuzz")
		s.handle(core.NewEvent(core.EventStart, stream), out)
		sent := 0
		for len(b) >= 2 {
			seq := uint16(b[0])<<8 | uint16(b[1])
			b = b[2:]
			if seq&0xff == 0xee { // sometimes, let time pass instead
				clock.Advance(time.Duration(seq>>8) * time.Millisecond)
				s.service(out)
				continue
			}
			p := core.NewPacket(12)
			copy(p.Data, rtpPacket(seq, 1, 0))
			p.Stream = stream
			s.handle(p, out)
			sent++
		}
		s.handle(core.NewEvent(core.EventEnd, stream), out)
		if got := len(out.seqs) + int(s.duplicate.Value()+s.late.Value()); got != sent {
			t.Fatalf("%d in, %d out + %v dup + %v late", sent, len(out.seqs), s.duplicate.Value(), s.late.Value())
		}
		for i := 1; i < len(out.seqs); i++ {
			if d := int16(out.seqs[i] - out.seqs[i-1]); d <= 0 {
				// A jump beyond the window restarts numbering; anything
				// else must move forward.
				if int(uint16(out.seqs[i]-out.seqs[i-1])) < 16+int(size) {
					t.Fatalf("released %d after %d", out.seqs[i], out.seqs[i-1])
				}
			}
		}
	})
}
