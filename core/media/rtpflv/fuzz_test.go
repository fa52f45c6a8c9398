package rtpflv

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/mediapipe/mediapipe/core/media/flv"
)

// encodePackets joins packets as [2-byte length][bytes]..., the shape
// FuzzReassemble reads its packet sequence in.
func encodePackets(pkts [][]byte) []byte {
	var b []byte
	for _, p := range pkts {
		b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
		b = append(b, p...)
	}
	return b
}

func decodePackets(b []byte) [][]byte {
	var pkts [][]byte
	for len(b) >= 2 {
		n := min(int(binary.BigEndian.Uint16(b)), len(b)-2)
		pkts = append(pkts, b[2:2+n])
		b = b[2+n:]
	}
	return pkts
}

// FuzzReassemble feeds arbitrary packet sequences: the reassembler must never
// panic and never emit a tag whose header disagrees with its length, its type
// or the cap.
func FuzzReassemble(f *testing.F) {
	for _, c := range fragCases {
		if len(c.tag) > 64<<10 {
			continue
		}
		fr := &Fragmenter{SSRC: 3, Seq: c.seq, PayloadType: 100, MaxPayload: c.maxPayload}
		pkts := fragmentAll(f, fr, c.tag)
		pkts = append(pkts, fragmentAll(f, fr, c.tag)...)
		f.Add(encodePackets(pkts), uint32(0))
		if len(pkts) > 2 {
			f.Add(encodePackets(append(pkts[:1:1], pkts[2:]...)), uint32(100)) // a lost fragment
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, maxTag uint32) {
		r := Reassembler{MaxTagSize: int(maxTag % (1 << 20))}
		limit := r.MaxTagSize
		if limit == 0 {
			limit = flv.MaxTagSize
		}
		for _, p := range decodePackets(data) {
			tg := r.Push(p)
			if tg == nil {
				continue
			}
			h, err := flv.Check(tg, limit)
			if err != nil {
				t.Fatalf("emitted a bad tag: %v", err)
			}
			if h.Type != flv.TypeAudio && h.Type != flv.TypeVideo && h.Type != flv.TypeScript {
				t.Fatalf("emitted tag type %d", h.Type)
			}
		}
	})
}

// FuzzRoundTrip fragments a random stream of tags, loses the packets the mask
// says, and checks that exactly the tags that lost nothing come out, byte
// for byte.
func FuzzRoundTrip(f *testing.F) {
	f.Add(uint64(1), uint8(10), uint16(1180), uint16(0), []byte{})
	f.Add(uint64(2), uint8(40), uint16(200), uint16(65534), []byte{0, 4, 0, 0x81})
	f.Add(uint64(3), uint8(5), uint16(11), uint16(7), []byte{0xff, 0, 0x10})
	f.Fuzz(func(t *testing.T, seed uint64, nTags uint8, maxPayload uint16, seq uint16, loss []byte) {
		if maxPayload < MinMaxPayload {
			maxPayload = MinMaxPayload
		}
		rng := rand.New(rand.NewPCG(seed, 42))
		fr := &Fragmenter{SSRC: rng.Uint32(), Seq: seq, PayloadType: 100, MaxPayload: int(maxPayload)}
		var r Reassembler
		pktIndex := 0
		for i := 0; i < int(nTags%64); i++ {
			n := rng.IntN(3000)
			if rng.IntN(8) == 0 {
				n = rng.IntN(40000)
			}
			b := make([]byte, n)
			for j := range b {
				b[j] = byte(rng.Uint32())
			}
			typ := []uint8{flv.TypeAudio, flv.TypeVideo, flv.TypeScript}[rng.IntN(3)]
			tg := flv.AppendTag(nil, typ, rng.Uint32(), b)
			complete := true
			var got []byte
			for _, p := range fragmentAll(t, fr, tg) {
				lost := pktIndex/8 < len(loss) && loss[pktIndex/8]&(1<<(pktIndex%8)) != 0
				pktIndex++
				if lost {
					complete = false
					continue
				}
				if out := r.Push(p); out != nil {
					got = append([]byte(nil), out...)
				}
			}
			if complete && !bytes.Equal(got, tg) {
				t.Fatalf("tag %d (%d bytes) arrived whole but came out as %d bytes", i, len(tg), len(got))
			}
			if !complete && got != nil {
				t.Fatalf("tag %d lost a fragment but was emitted", i)
			}
		}
	})
}
