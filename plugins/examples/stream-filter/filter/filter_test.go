package filter

import (
	"bytes"
	"slices"
	"testing"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/stagetest"
)

func TestFilter(t *testing.T) {
	def := core.Define(Spec, New)
	cases := []struct {
		name    string
		raw     map[string]any
		passes  []string // stream names that pass
		noAudio bool
		wantErr bool
	}{
		{name: "defaults pass everything", raw: map[string]any{}, passes: []string{"live/a", "x/y"}},
		{name: "drop audio", raw: map[string]any{"drop_audio": true}, passes: []string{"live/a", "x/y"}, noAudio: true},
		{name: "allow glob", raw: map[string]any{"allow": []any{"live/*"}}, passes: []string{"live/a"}},
		{name: "allow two", raw: map[string]any{"allow": []any{"nope", "x/?"}}, passes: []string{"x/y"}},
		{name: "bad glob", raw: map[string]any{"allow": []any{"["}}, wantErr: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := core.TestEnv("stream-filter")
			st, err := def.Build(c.raw, env)
			if c.wantErr {
				if err == nil {
					t.Fatal("built with a bad glob")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			h := stagetest.Start(t, st, env, false)
			a, b := h.StartStream("live/a"), h.StartStream("x/y")
			var want [][]byte
			for i := range 20 {
				for _, s := range []*core.Stream{a, b} {
					typ := []uint8{flv.TypeVideo, flv.TypeAudio}[i%2]
					tag := flv.AppendTag(nil, typ, uint32(i), []byte{byte(i), 1, 2, 3})
					h.SendData(s, typ, uint32(i), tag)
					if slices.Contains(c.passes, s.Name) && !(c.noAudio && typ == flv.TypeAudio) {
						want = append(want, tag)
					}
				}
			}
			h.EndStream(a)
			h.EndStream(b)
			if err := h.Close(); err != nil {
				t.Fatal(err)
			}
			got := h.Out.Data()
			if len(got) != len(want) {
				t.Fatalf("%d packets passed, want %d", len(got), len(want))
			}
			for i := range want {
				if !bytes.Equal(got[i].Data, want[i]) {
					t.Fatalf("packet %d differs", i)
				}
			}
			events := 0
			for _, p := range h.Out.Packets() {
				if p.Event != core.EventData {
					events++
					if !slices.Contains(c.passes, p.Stream.Name) {
						t.Errorf("%s of %s passed", p.Event, p.Stream.Name)
					}
				}
			}
			if events != 2*len(c.passes) {
				t.Errorf("%d events passed, want %d", events, 2*len(c.passes))
			}
		})
	}
}

func BenchmarkFilter(b *testing.B) {
	env := core.TestEnv("stream-filter")
	st, err := core.Define(Spec, New).Build(map[string]any{"drop_audio": true}, env)
	if err != nil {
		b.Fatal(err)
	}
	in := make(chan *core.Packet, 1)
	out := discard{}
	done := make(chan struct{})
	go func() { _ = st.Run(b.Context(), in, out); close(done) }()
	s := core.NewStream("live/bench")
	in <- core.NewEvent(core.EventStart, s)
	tag := flv.AppendTag(nil, flv.TypeVideo, 0, make([]byte, 1189))
	b.ReportAllocs()
	for b.Loop() {
		p := core.NewPacket(len(tag))
		copy(p.Data, tag)
		p.Stream, p.Type = s, flv.TypeVideo
		in <- p
	}
	close(in)
	<-done
}

type discard struct{}

func (discard) Emit(p *core.Packet) { p.Release() }
