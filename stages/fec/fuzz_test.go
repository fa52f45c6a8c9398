package fec

import (
	"bytes"
	"testing"
)

// FuzzFECDecoder runs the case table's streams with arbitrary losses and
// one arbitrary packet slipped in twice: raw, and behind an RTP header of
// the parity payload type (so its bytes are taken as the FEC header and
// shard). The decoder never panics, never passes parity, and every packet
// it emits is its source byte for byte, except for sequence numbers inside
// the group the junk claims (a forged parity is indistinguishable from a
// real one): those are still of the protected SSRC and sequence.
func FuzzFECDecoder(f *testing.F) {
	for i, c := range cases {
		var mask uint64
		for _, s := range c.loseSrc {
			mask |= 1 << (s % 64)
		}
		f.Add(uint8(i), mask, []byte{})
		f.Add(uint8(i), mask, []byte{0x11, 0x22, 0x33, 0x44, 0, 3, 10, 2, 0, 1, 0, 20, 1, 2, 3})
	}
	f.Fuzz(func(t *testing.T, idx uint8, mask uint64, junk []byte) {
		c := cases[int(idx)%len(cases)]
		src := c.sources()
		var wire [][]byte
		for i, p := range encode(t, c.group, c.overhead, src) {
			if i >= 64 || mask&(1<<i) == 0 {
				wire = append(wire, p.Data)
			}
		}
		forged := append([]byte{2 << 6, 101, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, junk...)
		at := len(junk) % (len(wire) + 1)
		wire = append(wire[:at], append([][]byte{junk, forged}, wire[at:]...)...)
		hitFrom, hitN := uint16(0), 0
		if p, ok := parseParity(forged, 101); ok {
			hitFrom, hitN = p.base, p.k
		}
		out, _ := decode(t, wire)
		if len(out) > len(wire)+len(src) {
			t.Fatalf("%d packets out of %d in", len(out), len(wire))
		}
		for _, p := range out {
			if bytes.Equal(p.Data, junk) {
				continue // not RTP: passed on untouched, not the decoder's to judge
			}
			if len(p.Data) >= 2 && p.Data[1]&0x7f == 101 {
				t.Fatal("parity passed the decoder")
			}
			seq := seqOf(p.Data)
			if i := int(seq - c.seq0); i < len(src) && bytes.Equal(p.Data, src[i]) {
				continue
			}
			if int(seq-hitFrom) < hitN {
				if _, q, _, ssrc, ok := rtpFields(p.Data); ok && q == seq && ssrc == testSSRC {
					continue
				}
			}
			t.Fatalf("packet seq %d out is not its source", seq)
		}
	})
}
