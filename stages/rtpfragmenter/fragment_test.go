package rtpfragmenter

import (
	"bytes"
	"testing"

	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/media/rtpflv"
)

// fragCases is the table the equivalence test and the benchmark share: the
// cases the issue names, plus the sequence wrap and the payload limits.
var fragCases = []struct {
	name       string
	tag        []byte
	maxPayload int
	seq        uint16
}{
	{"empty_body", flv.AppendTag(nil, flv.TypeScript, 0, nil), 1180, 1},
	{"exactly_max_payload", flv.AppendTag(nil, flv.TypeVideo, 40, body(1180-flv.HeaderSize, 1)), 1180, 7},
	{"one_byte_over", flv.AppendTag(nil, flv.TypeVideo, 80, body(1180-flv.HeaderSize+1, 2)), 1180, 8},
	{"keyframe_1MB", flv.AppendTag(nil, flv.TypeVideo, 0x01020304, body(1<<20, 3)), 1180, 1000},
	{"seq_wrap", flv.AppendTag(nil, flv.TypeVideo, 0xfffffff0, body(5000, 4)), 1000, 0xfffe},
	{"min_payload_200", flv.AppendTag(nil, flv.TypeAudio, 5, body(1000, 5)), 200, 65535},
	{"max_payload_65000", flv.AppendTag(nil, flv.TypeVideo, 9, body(200000, 6)), 65000, 3},
}

// The pion-written packets are byte for byte those of rtpflv's reference
// fragmenter, the format the seed system's edge reads.
func TestFragmenterMatchesWireReference(t *testing.T) {
	for _, c := range fragCases {
		t.Run(c.name, func(t *testing.T) {
			ref := &rtpflv.Fragmenter{SSRC: 0xdeadbeef, Seq: c.seq, PayloadType: 100, MaxPayload: c.maxPayload}
			f := &fragmenter{*ref}
			ts := uint32(c.tag[7])<<24 | uint32(c.tag[4])<<16 | uint32(c.tag[5])<<8 | uint32(c.tag[6])
			want := make([]byte, rtpflv.RTPHeaderSize+c.maxPayload)
			got := make([]byte, rtpflv.RTPHeaderSize+c.maxPayload)
			for off := 0; off < len(c.tag); {
				n1, next1 := ref.Put(want, c.tag, off, ts)
				n2, next2 := f.put(got, c.tag, off, ts)
				if n1 != n2 || next1 != next2 || !bytes.Equal(want[:n1], got[:n2]) {
					t.Fatalf("fragment at %d differs: ref %d bytes % x…, pion %d bytes % x…", off, n1, want[:12], n2, got[:12])
				}
				if f.Size(len(c.tag), off) != n2 {
					t.Fatalf("size %d, wrote %d", f.Size(len(c.tag), off), n2)
				}
				off = next2
			}
		})
	}
}

// BenchmarkFragment marshals each case's tag into one reused buffer, as the
// stage does into pooled packets: "rtpflv" is the hand-written reference,
// "pion" the stage's pion/rtp header path. ns/op is per tag; ns/packet shown.
func BenchmarkFragment(b *testing.B) {
	for _, c := range fragCases {
		ts := uint32(c.tag[4])<<16 | uint32(c.tag[5])<<8 | uint32(c.tag[6])
		packets := 0
		for off := 0; off < len(c.tag); off += c.maxPayload {
			packets++
		}
		buf := make([]byte, rtpflv.RTPHeaderSize+c.maxPayload)
		b.Run(c.name+"/rtpflv", func(b *testing.B) {
			f := &rtpflv.Fragmenter{SSRC: 1, Seq: c.seq, PayloadType: 100, MaxPayload: c.maxPayload}
			b.SetBytes(int64(len(c.tag)))
			b.ReportAllocs()
			for b.Loop() {
				for off := 0; off < len(c.tag); {
					_, off = f.Put(buf, c.tag, off, ts)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*packets), "ns/packet")
		})
		b.Run(c.name+"/pion", func(b *testing.B) {
			f := &fragmenter{rtpflv.Fragmenter{SSRC: 1, Seq: c.seq, PayloadType: 100, MaxPayload: c.maxPayload}}
			b.SetBytes(int64(len(c.tag)))
			b.ReportAllocs()
			for b.Loop() {
				for off := 0; off < len(c.tag); {
					_, off = f.put(buf, c.tag, off, ts)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*packets), "ns/packet")
		})
	}
}
