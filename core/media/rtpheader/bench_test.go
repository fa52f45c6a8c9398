package rtpheader

import (
	"testing"

	"github.com/pion/rtp"
)

// BenchmarkCheck checks every row of the table; ns/op is per table.
func BenchmarkCheck(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		for _, c := range headerCases {
			_, _, _ = Check(c.pkt)
		}
	}
}

// BenchmarkParse parses every row of the table; ns/op is per table.
func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		for _, c := range headerCases {
			_, _, _ = Parse(c.pkt)
		}
	}
}

// BenchmarkPut writes one header into a reused buffer: "put" is Put, "pion"
// pion's Header.MarshalTo, the writer the fragmenter stage used before.
func BenchmarkPut(b *testing.B) {
	buf := make([]byte, Size)
	b.Run("put", func(b *testing.B) {
		b.ReportAllocs()
		seq := uint16(0)
		for b.Loop() {
			Put(buf, Header{Marker: seq&1 != 0, PayloadType: 100, Seq: seq, Timestamp: 9, SSRC: 0xdeadbeef})
			seq++
		}
	})
	b.Run("pion", func(b *testing.B) {
		b.ReportAllocs()
		seq := uint16(0)
		for b.Loop() {
			h := rtp.Header{Version: 2, Marker: seq&1 != 0, PayloadType: 100, SequenceNumber: seq, Timestamp: 9, SSRC: 0xdeadbeef}
			_, _ = h.MarshalTo(buf)
			seq++
		}
	})
}
