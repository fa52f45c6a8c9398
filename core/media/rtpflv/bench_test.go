package rtpflv

import (
	"testing"

	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/media/rtpheader"
)

// BenchmarkFragment marshals each case's tag into one reused packet buffer,
// as the stage does into pooled packets. ns/op is per tag; ns/packet is shown.
func BenchmarkFragment(b *testing.B) {
	for _, c := range fragCases {
		b.Run(c.name, func(b *testing.B) {
			f := &Fragmenter{SSRC: 1, Seq: c.seq, PayloadType: payloadType, MaxPayload: c.maxPayload}
			buf := make([]byte, rtpheader.Size+c.maxPayload)
			h, _ := flv.ParseHeader(c.tag)
			b.SetBytes(int64(len(c.tag)))
			b.ReportAllocs()
			for b.Loop() {
				for off := 0; off < len(c.tag); {
					_, off = f.Put(buf, c.tag, off, h.Timestamp)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*c.packets), "ns/packet")
		})
	}
}

// BenchmarkReassemble pushes each case's packets (sequence numbers renewed
// every round) through one Reassembler. ns/op is per tag.
func BenchmarkReassemble(b *testing.B) {
	for _, c := range fragCases {
		b.Run(c.name, func(b *testing.B) {
			f := &Fragmenter{SSRC: 1, Seq: c.seq, PayloadType: payloadType, MaxPayload: c.maxPayload}
			pkts := fragmentAll(b, f, c.tag)
			var r Reassembler
			seq := c.seq
			b.SetBytes(int64(len(c.tag)))
			b.ReportAllocs()
			for b.Loop() {
				var out []byte
				for _, p := range pkts {
					p[2], p[3] = byte(seq>>8), byte(seq)
					seq++
					out = r.Push(p)
				}
				if len(out) != len(c.tag) {
					b.Fatalf("tag not reassembled")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*c.packets), "ns/packet")
		})
	}
}
