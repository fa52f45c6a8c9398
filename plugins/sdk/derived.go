package sdk

import "github.com/mediapipe/mediapipe/core"

// Derived keeps the streams a stage makes out of the streams it is given:
// renamed copies, or several streams split from one. Setting Stream.Name on
// a stream the stage was given renames nothing (mediapipe keeps its name,
// reports the mistake and drops its data); a stage that renames or splits
// emits its own streams instead:
//
//   - on the start of a given stream, Open a stream under the new name (its
//     start is emitted, the source's init tags copied);
//   - for each data packet, Emit it onto the derived stream (the source's
//     init tags are copied again whenever they changed, so late viewers get
//     the current ones);
//   - on the end of the given stream, End what was derived from it.
//
// A Derived is used by the stage's Run goroutine only. Rename is the whole
// loop for a stage that renames.
type Derived struct {
	from map[*core.Stream][]derived
}

type derived struct {
	s    *core.Stream
	init *core.InitTags // the source's init tags last copied
}

// Open starts a stream named name derived from src and emits its start, or
// returns the one already open under that name.
func (d *Derived) Open(src *core.Stream, name string, out core.Output) *core.Stream {
	if d.from == nil {
		d.from = map[*core.Stream][]derived{}
	}
	for _, x := range d.from[src] {
		if x.s.Name == name {
			return x.s
		}
	}
	s := core.NewStream(name)
	init := src.Init()
	s.SetInit(init)
	d.from[src] = append(d.from[src], derived{s: s, init: init})
	out.Emit(core.NewEvent(core.EventStart, s))
	return s
}

// Emit points data packet p, of a stream the stage was given, at dst (one
// Open derived from p's stream) and emits it, first copying the source's
// init tags to dst if they changed. It does not allocate.
func (d *Derived) Emit(p *core.Packet, dst *core.Stream, out core.Output) {
	list := d.from[p.Stream]
	for i := range list {
		if list[i].s != dst {
			continue
		}
		if cur := p.Stream.Init(); cur != list[i].init {
			dst.SetInit(cur)
			list[i].init = cur
		}
		break
	}
	p.Stream = dst
	out.Emit(p)
}

// End emits the end of every stream derived from src.
func (d *Derived) End(src *core.Stream, out core.Output) {
	for _, x := range d.from[src] {
		out.Emit(core.NewEvent(core.EventEnd, x.s))
	}
	delete(d.from, src)
}

// EndAll ends every derived stream, for a stage whose input ended while
// streams were open.
func (d *Derived) EndAll(out core.Output) {
	for src := range d.from {
		d.End(src, out)
	}
}

// Rename is the Run loop of a stage that renames streams: rename gives the
// new name of a stream (its own name, or "": the stream passes unchanged).
// Streams keep their packets, events and init tags under the new name.
func Rename(in <-chan *core.Packet, out core.Output, rename func(name string) string) error {
	var d Derived
	to := map[*core.Stream]*core.Stream{} // given stream → its renamed one
	defer d.EndAll(out)
	for p := range in {
		src := p.Stream
		switch p.Event {
		case core.EventStart:
			if name := rename(src.Name); name != "" && name != src.Name {
				to[src] = d.Open(src, name, out)
				p.Release()
				continue
			}
		case core.EventEnd:
			if _, ok := to[src]; ok {
				delete(to, src)
				d.End(src, out)
				p.Release()
				continue
			}
		default:
			if dst := to[src]; dst != nil {
				d.Emit(p, dst, out)
				continue
			}
		}
		out.Emit(p)
	}
	return nil
}
