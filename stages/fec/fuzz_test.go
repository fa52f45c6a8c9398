package fec

import (
	"bytes"
	"slices"
	"testing"

	"github.com/mediapipe/mediapipe/core/stagetest"
)

// FuzzFECDecoder runs the case table's streams with arbitrary losses (mask:
// bit i drops the i-th packet on the wire, parity included; the seeds are
// each case's own losses) and one arbitrary packet slipped in twice: raw,
// and behind an RTP header of the parity payload type (so its bytes are
// taken as the FEC header and shard). The decoder never panics, never
// passes parity, and every packet it emits is its source byte for byte,
// except for sequence numbers inside the group the junk claims (a forged
// parity is indistinguishable from a real one): those are still of the
// protected SSRC and sequence. Without junk, every group that lost no more
// sources than the parity that reached the decoder is recovered whole.
func FuzzFECDecoder(f *testing.F) {
	for i, c := range cases {
		var mask uint64
		si, pi := 0, 0
		for w, p := range encode(f, c.group, c.overhead, c.sources()) {
			parity := p.Data[1]&0x7f == 101
			if w < 64 && (parity && slices.Contains(c.loseParity, pi) || !parity && slices.Contains(c.loseSrc, si)) {
				mask |= 1 << w
			}
			if parity {
				pi++
			} else {
				si++
			}
		}
		f.Add(uint8(i), mask, []byte{})
		f.Add(uint8(i), mask, []byte{0x11, 0x22, 0x33, 0x44, 0, 3, 10, 2, 0, 1, 0, 20, 1, 2, 3})
	}
	f.Fuzz(func(t *testing.T, idx uint8, mask uint64, junk []byte) {
		c := cases[int(idx)%len(cases)]
		src := c.sources()
		var wire [][]byte
		sent := encode(t, c.group, c.overhead, src)
		for i, p := range sent {
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
		if len(junk) == 0 {
			mustRecover(t, sent, mask, out, c.seq0)
		}
	})
}

// mustRecover checks that every group of sent (its source packets and the
// parity after them) that lost at most as many sources as parity reached
// the decoder came out whole: Reed-Solomon rebuilds any k of k+m.
func mustRecover(t *testing.T, sent []stagetest.Captured, mask uint64, out []stagetest.Captured, seq0 uint16) {
	t.Helper()
	came := map[uint16]bool{}
	for _, p := range out {
		if len(p.Data) >= 12 { // the raw junk passes too
			came[seqOf(p.Data)] = true
		}
	}
	var lost []uint16
	parity := 0
	check := func() {
		if len(lost) > 0 && len(lost) <= parity {
			for _, seq := range lost {
				if !came[seq] {
					t.Fatalf("source %d lost in a group that lost %d sources and kept %d parity: not recovered", seq-seq0, len(lost), parity)
				}
			}
		}
		lost, parity = lost[:0], 0
	}
	for i, p := range sent {
		dropped := i < 64 && mask&(1<<i) != 0
		if p.Data[1]&0x7f == 101 {
			if !dropped {
				parity++
			}
			if i+1 == len(sent) || sent[i+1].Data[1]&0x7f != 101 {
				check() // the group's last parity
			}
			continue
		}
		if dropped {
			lost = append(lost, seqOf(p.Data))
		}
	}
}
