package flvtagger

import (
	"bytes"
	"testing"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/stagetest"
)

var (
	meta     = []byte{0x02, 0x00, 0x0a, 'o', 'n', 'M', 'e', 't', 'a', 'D', 'a', 't', 'a', 0x08, 0, 0, 0, 0, 0, 0, 9}
	avcSeq   = []byte{0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f}
	avcKey   = []byte{0x17, 1, 0, 0, 0, 0, 0, 0, 2, 0x65, 0x88}
	aacSeq   = []byte{0xaf, 0, 0x12, 0x10}
	aacRaw   = []byte{0xaf, 1, 0x21, 0x10}
	avcSeq2  = []byte{0x17, 0, 0, 0, 0, 1, 0x4d, 0, 0x1e}
	textData = []byte{0x02, 0x00, 0x0a, 'o', 'n', 'T', 'e', 'x', 't', 'D', 'a', 't', 'a'}
)

// taggerInput is one media message fed to the tagger.
type taggerInput struct {
	typ  uint8
	ts   uint32
	body []byte
}

// initAndMedia is a stream's init tags and a first frame of each kind.
var initAndMedia = []taggerInput{
	{flv.TypeScript, 0, meta},
	{flv.TypeVideo, 0, avcSeq},
	{flv.TypeAudio, 0, aacSeq},
	{flv.TypeVideo, 33, avcKey},
	{flv.TypeAudio, 0x01020304, aacRaw}, // extended timestamp byte
}

func TestTagger(t *testing.T) {
	h := stagetest.Start(t, mustNew(t), nil, false)
	s := h.StartStream("live/t")
	in := append(append([]taggerInput(nil), initAndMedia...),
		taggerInput{flv.TypeScript, 40, textData}, // not metadata: passed on, not kept
		taggerInput{flv.TypeVideo, 66, avcSeq2},   // new sequence header replaces the old
	)
	for _, p := range in {
		h.SendData(s, p.typ, p.ts, p.body)
	}
	h.SendData(s, 20, 0, []byte{1}) // not an FLV tag type: dropped
	h.EndStream(s)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	got := h.Out.Data()
	if len(got) != len(in) {
		t.Fatalf("%d tags out, want %d", len(got), len(in))
	}
	for i, p := range in {
		want := flv.AppendTag(nil, p.typ, p.ts, p.body)
		if !bytes.Equal(got[i].Data, want) || got[i].Type != p.typ || got[i].Timestamp != p.ts || got[i].Stream != s {
			t.Errorf("tag %d: got % x, want % x", i, got[i].Data, want)
		}
	}
	init := s.Init()
	if init == nil || !bytes.Equal(init.Metadata, flv.AppendTag(nil, 18, 0, meta)) ||
		!bytes.Equal(init.Video, flv.AppendTag(nil, 9, 66, avcSeq2)) || !bytes.Equal(init.Audio, flv.AppendTag(nil, 8, 0, aacSeq)) {
		t.Errorf("init tags: %+v", init)
	}
	if all := h.Out.Packets(); all[0].Event != core.EventStart || all[len(all)-1].Event != core.EventEnd {
		t.Errorf("events not passed through")
	}
}

func TestInitNeverMutated(t *testing.T) {
	h := stagetest.Start(t, mustNew(t), nil, false)
	s := h.StartStream("live/m")
	h.SendData(s, flv.TypeVideo, 0, avcSeq)
	h.SendData(s, flv.TypeAudio, 0, aacSeq)
	h.Out.WaitData(2, 5e9)
	first := s.Init()
	firstVideo := bytes.Clone(first.Video)
	h.SendData(s, flv.TypeVideo, 5, avcSeq2)
	h.Out.WaitData(3, 5e9)
	if s.Init() == first || !bytes.Equal(first.Video, firstVideo) {
		t.Fatalf("shared InitTags was changed in place")
	}
	_ = h.Close()
}

func mustNew(t testing.TB) core.Stage {
	st, err := New(nil, core.TestEnv("flv-tagger"))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func BenchmarkTag(b *testing.B) {
	st := mustNew(b).(*Stage)
	s := core.NewStream("live/b")
	st.streams[s] = struct{}{}
	body := bytes.Repeat([]byte{0x27, 1, 0, 0, 0}, 1000)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		p := core.NewPacket(len(body))
		copy(p.Data, body)
		p.Stream, p.Type = s, flv.TypeVideo
		st.tag(p).Release()
	}
}
