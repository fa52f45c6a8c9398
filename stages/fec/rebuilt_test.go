package fec

import (
	"testing"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/stagetest"
)

// flagOut records, by sequence number, whether each packet out was marked
// rebuilt.
type flagOut map[uint16]bool

func (f flagOut) Emit(p *core.Packet) {
	if p.Event == core.EventData {
		f[seqOf(p.Data)] = p.Rebuilt
	}
	p.Release()
}

// TestRebuiltMarked: the packets fec-decoder recovers are marked Rebuilt
// (rtp-reorder then reports them lost: the path's loss before FEC), those
// that came by themselves are not.
func TestRebuiltMarked(t *testing.T) {
	c := fecCase{group: 10, overhead: 0.2, n: 30, loseSrc: []int{3, 14, 25}}
	var wire [][]byte
	for _, p := range encode(t, c.group, c.overhead, c.sources()) {
		wire = append(wire, p.Data)
	}
	var cfg DecoderConfig
	stagetest.Decode(t, "fec-decoder", nil, &cfg)
	st, err := NewDecoder(&cfg, core.TestEnv("fec-decoder"))
	if err != nil {
		t.Fatal(err)
	}
	d := st.(*Decoder)
	out := flagOut{}
	d.out = out
	stream := core.NewStream("live/fec")
	d.handle(core.NewEvent(core.EventStart, stream))
	for _, b := range c.wire(wire) {
		p := core.NewPacket(len(b))
		copy(p.Data, b)
		p.Stream = stream
		d.handle(p)
	}
	if len(out) != c.n {
		t.Fatalf("%d packets out, want %d", len(out), c.n)
	}
	for seq, rebuilt := range out {
		lost := seq == 3 || seq == 14 || seq == 25
		if rebuilt != lost {
			t.Fatalf("packet %d: rebuilt %v, lost on the wire %v", seq, rebuilt, lost)
		}
	}
}
