package flv

import (
	"bytes"
	"testing"
)

// BenchmarkParse runs what a stage does with each tag it receives: Check
// the header, classify the body, test for a keyframe. ns/op is per tag.
func BenchmarkParse(b *testing.B) {
	for _, c := range tagCases {
		if !c.whole() {
			continue
		}
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.tag)))
			b.ReportAllocs()
			for b.Loop() {
				h, err := Check(c.tag, 0)
				if err != nil {
					b.Fatal(err)
				}
				body := c.tag[HeaderSize:]
				if InitKindOf(h.Type, body) != c.init || h.Type == TypeVideo && IsVideoKeyframe(body) != c.key {
					b.Fatal("misread")
				}
			}
		})
	}
}

// BenchmarkReader reads the table's whole tags back from a file. ns/op is
// per file.
func BenchmarkReader(b *testing.B) {
	f := file()
	b.SetBytes(int64(len(f)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ReadAll(bytes.NewReader(f)); err != nil {
			b.Fatal(err)
		}
	}
}
