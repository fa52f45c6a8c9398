package repairwire

import (
	"bytes"
	"testing"
)

// BenchmarkFrameReader reads every frame of the table from one stream with
// one reused reader, parsing the NACK batches as the server does: the
// request path allocates nothing. ns/op is per table.
func BenchmarkFrameReader(b *testing.B) {
	var all []byte
	for _, tc := range frameCases {
		all = append(all, tc.wire...)
	}
	r := bytes.NewReader(all)
	fr := NewFrameReader(r, MaxReplyFrame)
	entries := make([]NACKEntry, 0, MaxNACKEntries)
	b.SetBytes(int64(len(all)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(all)
		for {
			typ, p, err := fr.Next()
			if err != nil {
				break
			}
			if typ == FrameNACK {
				entries, _ = ParseNACK(p, entries[:0])
			}
		}
	}
}
