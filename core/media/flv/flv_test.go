package flv

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range tagCases {
		t.Run(c.name, func(t *testing.T) {
			h, err := ParseHeader(c.tag)
			if (err != nil) != errors.Is(c.err, ErrShort) || h != c.hdr {
				t.Fatalf("ParseHeader = %+v, %v; want %+v", h, err, c.hdr)
			}
			h, err = Check(c.tag, c.maxBody)
			if !errors.Is(err, c.err) || (c.err == nil) != (err == nil) || h != c.hdr {
				t.Fatalf("Check = %+v, %v; want %+v, %v", h, err, c.hdr, c.err)
			}
			if err != nil {
				return
			}
			// What PutHeader writes reads back the same, but for the bits
			// above the type and the stream id, which it writes as zero.
			var hb [HeaderSize]byte
			PutHeader(hb[:], h.Type, h.DataSize, h.Timestamp)
			if g, _ := ParseHeader(hb[:]); g != (Header{Type: h.Type, DataSize: h.DataSize, Timestamp: h.Timestamp}) {
				t.Fatalf("PutHeader of %+v reads back %+v", h, g)
			}
			body := c.tag[HeaderSize:]
			if c.video != nil {
				if v, ok := ParseVideo(body); !ok || v != *c.video {
					t.Fatalf("ParseVideo = %+v, %v; want %+v", v, ok, *c.video)
				}
			}
			if c.audio != nil {
				if a, ok := ParseAudio(body); !ok || a != *c.audio {
					t.Fatalf("ParseAudio = %+v, %v; want %+v", a, ok, *c.audio)
				}
			}
		})
	}
}

// TestReader reads back every whole row from a file, then a file cut at
// each byte: never a wrong tag, and an error other than EOF when cut mid-tag.
func TestReader(t *testing.T) {
	var want [][]byte
	for _, c := range tagCases {
		if c.whole() {
			want = append(want, c.tag)
		}
	}
	f := file()
	got, err := ReadAll(bytes.NewReader(f))
	if err != nil || len(got) != len(want) {
		t.Fatalf("ReadAll: %d tags, %v; want %d", len(got), err, len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("tag %d: % x, want % x", i, got[i], want[i])
		}
	}
	// Tag boundaries: where a cut leaves whole tags and a clean EOF.
	clean := map[int]bool{}
	at := len(FileHeader(true, true))
	for _, w := range want {
		clean[at] = true
		at += len(w) + 4
	}
	for n := range len(f) {
		got, err := ReadAll(bytes.NewReader(f[:n]))
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("cut at %d: tag %d differs", n, i)
			}
		}
		if clean[n] != (err == nil) {
			t.Fatalf("cut at %d: %d tags, %v", n, len(got), err)
		}
	}
	if _, err := ReadAll(bytes.NewReader([]byte("FLX\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"))); !errors.Is(err, ErrNotFLV) {
		t.Fatalf("not an FLV file: %v", err)
	}
	r := NewReader(bytes.NewReader(f))
	r.MaxBody = 8
	for {
		if _, err := r.Next(); err != nil {
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("a body over MaxBody: %v", err)
			}
			break
		}
	}
	// An empty body is not a file: it has no file header.
	if _, err := NewReader(bytes.NewReader(nil)).Next(); err == io.EOF || !errors.Is(err, io.EOF) {
		t.Fatalf("empty input: %v, want the file header's EOF wrapped", err)
	}
}
