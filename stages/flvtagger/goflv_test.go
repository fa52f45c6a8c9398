package flvtagger

import (
	"bytes"
	"io"
	"testing"

	flvtag "github.com/yutopp/go-flv/tag"

	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/stagetest"
)

// The tag types the tagger writes (flv's, which RTMP shares) are go-flv's.
func TestTagTypesAreFLVs(t *testing.T) {
	if flv.TypeAudio != uint8(flvtag.TagTypeAudio) || flv.TypeVideo != uint8(flvtag.TagTypeVideo) || flv.TypeScript != uint8(flvtag.TagTypeScriptData) {
		t.Fatal("flv's tag types differ from go-flv's")
	}
}

// go-flv's own decoder, an implementation independent of ours, reads every
// tag the tagger writes with the type, the (extended) timestamp and the
// body it was given; onMetaData decodes as script data.
func TestGoFLVReadsTaggerOutput(t *testing.T) {
	h := stagetest.Start(t, mustNew(t), nil, false)
	s := h.StartStream("live/g")
	in := initAndMedia
	for _, p := range in {
		h.SendData(s, p.typ, p.ts, p.body)
	}
	h.EndStream(s)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	got := h.Out.Data()
	if len(got) != len(in) {
		t.Fatalf("%d tags, want %d", len(got), len(in))
	}
	for i, p := range in {
		var tag flvtag.FlvTag
		if err := flvtag.DecodeFlvTag(bytes.NewReader(got[i].Data), &tag); err != nil {
			t.Fatalf("tag %d: go-flv cannot decode it: %v", i, err)
		}
		if uint8(tag.TagType) != p.typ || tag.Timestamp != p.ts {
			t.Fatalf("tag %d: go-flv reads type %d ts %#x, want %d %#x", i, tag.TagType, tag.Timestamp, p.typ, p.ts)
		}
		switch d := tag.Data.(type) {
		case *flvtag.ScriptData:
			if _, ok := d.Objects["onMetaData"]; !ok {
				t.Fatalf("tag %d: script data without onMetaData: %v", i, d.Objects)
			}
		case *flvtag.VideoData:
			rest, _ := io.ReadAll(d.Data)
			if uint8(d.FrameType)<<4|uint8(d.CodecID) != p.body[0] || !bytes.HasSuffix(p.body, rest) {
				t.Fatalf("tag %d: video %+v, data % x", i, d, rest)
			}
		case *flvtag.AudioData:
			rest, _ := io.ReadAll(d.Data)
			if !bytes.HasSuffix(p.body, rest) || len(rest) != len(p.body)-2 {
				t.Fatalf("tag %d: audio data % x, body % x", i, rest, p.body)
			}
		default:
			t.Fatalf("tag %d: go-flv decoded %T", i, tag.Data)
		}
		tag.Close()
	}
}
