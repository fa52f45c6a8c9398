package sdk_test

import (
	"testing"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/plugins/sdk"
)

// emitted is one packet as the next stage saw it at Emit.
type emitted struct {
	event core.Event
	name  string
	init  *core.InitTags
	data  string
}

type record struct{ got []emitted }

func (r *record) Emit(p *core.Packet) {
	r.got = append(r.got, emitted{p.Event, p.Stream.Name, p.Stream.Init(), string(p.Data)})
	p.Release()
}

func data(s *core.Stream, text string) *core.Packet {
	p := core.NewPacket(len(text))
	copy(p.Data, text)
	p.Stream = s
	return p
}

// TestRename: a renamed stream carries its source's start, data and end
// under the new name, with its init tags; a stream rename leaves alone
// passes as it was.
func TestRename(t *testing.T) {
	cam, other := core.NewStream("live/cam1"), core.NewStream("live/other")
	init1 := &core.InitTags{Video: []byte("avc1")}
	cam.SetInit(init1)
	in := make(chan *core.Packet, 16)
	in <- core.NewEvent(core.EventStart, cam)
	in <- core.NewEvent(core.EventStart, other)
	in <- data(cam, "a")
	in <- data(other, "b")
	in <- core.NewEvent(core.EventEnd, cam)
	in <- core.NewEvent(core.EventEnd, other)
	close(in)
	out := &record{}
	if err := sdk.Rename(in, out, func(name string) string {
		return map[string]string{"live/cam1": "public/lobby"}[name]
	}); err != nil {
		t.Fatal(err)
	}
	want := []emitted{
		{core.EventStart, "public/lobby", init1, ""},
		{core.EventStart, "live/other", nil, ""},
		{core.EventData, "public/lobby", init1, "a"},
		{core.EventData, "live/other", nil, "b"},
		{core.EventEnd, "public/lobby", init1, ""},
		{core.EventEnd, "live/other", nil, ""},
	}
	check(t, out.got, want)
}

// TestDerivedCopiesInitChanges: the source's init tags are copied to the
// derived stream before the first packet that follows their change, so a
// viewer joining then gets the current ones.
func TestDerivedCopiesInitChanges(t *testing.T) {
	var d sdk.Derived
	out := &record{}
	cam := core.NewStream("live/cam1")
	init1, init2 := &core.InitTags{Video: []byte("avc1")}, &core.InitTags{Video: []byte("avc2")}
	cam.SetInit(init1)
	dst := d.Open(cam, "public/lobby", out)
	if again := d.Open(cam, "public/lobby", out); again != dst {
		t.Error("a second Open of the same name made another stream")
	}
	d.Emit(data(cam, "a"), dst, out)
	cam.SetInit(init2)
	d.Emit(data(cam, "b"), dst, out)
	d.End(cam, out)
	check(t, out.got, []emitted{
		{core.EventStart, "public/lobby", init1, ""},
		{core.EventData, "public/lobby", init1, "a"},
		{core.EventData, "public/lobby", init2, "b"},
		{core.EventEnd, "public/lobby", init2, ""},
	})
}

func check(t *testing.T, got, want []emitted) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d packets, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("packet %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

type nop struct{}

func (nop) Emit(*core.Packet) {}

// Derived.Emit is on the per-packet path: it must not allocate.
func TestDerivedEmitDoesNotAllocate(t *testing.T) {
	var d sdk.Derived
	src := core.NewStream("live/cam1")
	dst := d.Open(src, "public/lobby", nop{})
	p := data(src, "x")
	if n := testing.AllocsPerRun(100, func() {
		p.Stream = src
		d.Emit(p, dst, nop{})
	}); n != 0 {
		t.Errorf("Derived.Emit: %v allocs per packet", n)
	}
}
