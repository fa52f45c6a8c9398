package flv

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParseHeader feeds arbitrary tags to ParseHeader and Check: never a
// panic, an error exactly when the tag is short, the wrong size or over the
// cap, and a header that PutHeader writes back the same.
func FuzzParseHeader(f *testing.F) {
	for _, c := range tagCases {
		f.Add(c.tag, c.maxBody)
	}
	f.Fuzz(func(t *testing.T, tag []byte, maxBody int) {
		h, err := ParseHeader(tag)
		if (err != nil) != (len(tag) < HeaderSize) {
			t.Fatalf("ParseHeader of %d bytes: %v", len(tag), err)
		}
		if err != nil {
			return
		}
		if h.Type > 0x1f || h.DataSize > MaxTagSize || h.StreamID > 0xffffff {
			t.Fatalf("header %+v out of its fields' range", h)
		}
		var hb [HeaderSize]byte
		PutHeader(hb[:], h.Type, h.DataSize, h.Timestamp)
		if !bytes.Equal(hb[1:8], tag[1:8]) || hb[0] != tag[0]&0x1f {
			t.Fatalf("PutHeader of %+v wrote % x, read from % x", h, hb, tag[:HeaderSize])
		}
		c, err := Check(tag, maxBody)
		if c != h {
			t.Fatalf("Check read %+v, ParseHeader %+v", c, h)
		}
		limit := maxBody
		if limit <= 0 {
			limit = MaxTagSize
		}
		switch {
		case int(h.DataSize) > limit:
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("%d bytes over a cap of %d: %v", h.DataSize, limit, err)
			}
		case int(h.DataSize) != len(tag)-HeaderSize:
			if !errors.Is(err, ErrSize) {
				t.Fatalf("size %d in a %d-byte tag: %v", h.DataSize, len(tag), err)
			}
		case err != nil:
			t.Fatalf("a whole tag refused: %v", err)
		}
	})
}

// FuzzParseVideo feeds arbitrary video bodies to ParseVideo and what is
// built on it: never a panic, and a keyframe is always a parsed frame of
// type 1 carrying a picture, never an init tag.
func FuzzParseVideo(f *testing.F) {
	for _, c := range tagCases {
		if c.hdr.Type == TypeVideo && len(c.tag) >= HeaderSize {
			f.Add(c.tag[HeaderSize:])
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		v, ok := ParseVideo(body)
		if ok && (len(body) == 0 || (v.Enhanced || v.Codec == CodecAVC || v.Codec == CodecHEVC) && len(body) < 5) {
			t.Fatalf("%d-byte body parsed as %+v", len(body), v)
		}
		if v.FrameType > 7 || v.Codec > 15 {
			t.Fatalf("%+v out of its fields' range", v)
		}
		key := IsVideoKeyframe(body)
		if key && (!ok || v.FrameType != FrameKey || v.PacketType != AVCNALU) {
			t.Fatalf("keyframe %+v (ok %v)", v, ok)
		}
		kind := InitKindOf(TypeVideo, body)
		if kind != InitNone && (kind != InitVideo || key || !ok || !v.IsSequenceHeader()) {
			t.Fatalf("init kind %d for %+v, keyframe %v", kind, v, key)
		}
	})
}

// FuzzParseAudio feeds arbitrary audio bodies to ParseAudio and
// InitKindOf: never a panic, and only an AAC sequence header is audio's
// init tag.
func FuzzParseAudio(f *testing.F) {
	for _, c := range tagCases {
		if c.hdr.Type == TypeAudio && len(c.tag) >= HeaderSize {
			f.Add(c.tag[HeaderSize:])
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		a, ok := ParseAudio(body)
		if ok && (len(body) == 0 || a.Codec == SoundAAC && len(body) < 2) {
			t.Fatalf("%d-byte body parsed as %+v", len(body), a)
		}
		if a.Codec != SoundAAC && ok && a.PacketType != AACRaw {
			t.Fatalf("%+v: a packet type for a codec without one", a)
		}
		kind := InitKindOf(TypeAudio, body)
		if want := ok && a.IsSequenceHeader(); (kind == InitAudio) != want || kind != InitNone && kind != InitAudio {
			t.Fatalf("audio init kind %d for %+v (ok %v)", kind, a, ok)
		}
	})
}

// FuzzParseFile feeds arbitrary bytes to the Reader as an FLV file or
// HTTP-FLV body: never a panic, and every tag it returns passes Check.
// MaxBody is small so a size field's claim costs little.
func FuzzParseFile(f *testing.F) {
	full := file()
	f.Add(full)
	f.Add(full[:len(full)-3]) // cut in the last tag
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data))
		r.MaxBody = 1 << 16
		for {
			tag, err := r.Next()
			if err != nil {
				return
			}
			if _, err := Check(tag, r.MaxBody); err != nil {
				t.Fatalf("Reader returned a tag Check refuses: %v", err)
			}
		}
	})
}
