package rtpreorder

import (
	"cmp"
	"slices"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
)

type count int

func (c *count) Inc() { *c++ }

// rig drives one buffer alone, as the stage does, with a fake clock and
// plain counters in place of the stage's.
type rig struct {
	t     testing.TB
	b     *buffer
	env   bufferEnv
	now   time.Time
	retry time.Duration // 0: nothing repairs

	gapSkipped, duplicate, late, overflow, repaired count
	refused, unavailable, repairLate, rebuilt       count
	delays                                          []time.Duration // repairDelay's samples
	wakes                                           int             // calls of wake
	nacked                                          []uint16        // every NACK the buffer queued, in order
	out                                             []*core.Packet
}

func newRig(t testing.TB, size int, latency, retry time.Duration) *rig {
	r := &rig{t: t, now: time.Unix(1_700_000_000, 0), retry: retry}
	r.env = bufferEnv{
		now:         func() time.Time { return r.now },
		latency:     latency,
		retry:       func() time.Duration { return r.retry },
		wake:        func(time.Time) { r.wakes++ },
		nack:        func(*buffer) {},
		repairDelay: func(d time.Duration) { r.delays = append(r.delays, d) },
		gapSkipped:  &r.gapSkipped,
		duplicate:   &r.duplicate,
		late:        &r.late,
		overflow:    &r.overflow,
		repaired:    &r.repaired,
		refused:     &r.refused,
		unavailable: &r.unavailable,
		repairLate:  &r.repairLate,
		rebuilt:     &r.rebuilt,
	}
	r.b = newBuffer(&r.env, nil, size)
	r.b.reset(1)
	return r
}

func (r *rig) Emit(p *core.Packet) { r.out = append(r.out, p) }

// takeNacks does what the stage's flushNacks does with the pending NACKs.
func (r *rig) takeNacks() {
	r.nacked = append(r.nacked, r.b.pending...)
	r.b.pending, r.b.dirty = r.b.pending[:0], false
}

func (r *rig) insert(seq uint16, repair bool) *core.Packet {
	// Pooled, as the stage's are: the buffer releases what it drops.
	p := core.NewPacket(2)
	p.Data[0], p.Data[1] = byte(seq>>8), byte(seq)
	r.b.insert(p, seq, repair, r)
	r.takeNacks()
	return p
}

// advance moves the clock on by d and services the buffer if it is due,
// as the stage's timer does.
func (r *rig) advance(d time.Duration) {
	r.now = r.now.Add(d)
	if r.b.missing > 0 && !r.b.nextEvent.After(r.now) {
		r.b.service(r.now, r.retry, r)
		r.takeNacks()
	}
}

func (r *rig) seqs() []uint16 {
	var s []uint16
	for _, p := range r.out {
		s = append(s, uint16(p.Data[0])<<8|uint16(p.Data[1]))
	}
	return s
}

// check asserts the buffer's own bookkeeping: the window fits its bound
// and missing counts the open gaps in it.
func (r *rig) check() {
	r.t.Helper()
	b := r.b
	if b.end-b.next > b.max || int64(len(b.slots)) > b.max {
		r.t.Fatalf("window [%d, %d) in %d slots, bound %d", b.next, b.end, len(b.slots), b.max)
	}
	open := 0
	for e := b.next; e < b.end; e++ {
		if sl := b.slot(e); sl.ext == e && (sl.state == slotMissing || sl.state == slotGone) {
			open++
		}
	}
	if open != b.missing {
		r.t.Fatalf("missing %d, %d gaps open in the window", b.missing, open)
	}
}

// bufferCase drives one buffer through run and says what it must release,
// count and NACK.
type bufferCase struct {
	name  string
	retry time.Duration
	size  int
	run   func(r *rig)
	want  []uint16
	// counters and NACKs after run
	skipped, dup, late, overflow, repaired int
	nacked                                 []uint16
}

// The latency every buffer case runs with, and the retry interval of the
// cases that have repair (retry: caseRetry; 0 is none).
const caseLatency, caseRetry = 80 * time.Millisecond, 20 * time.Millisecond

var bufferCases = []bufferCase{{
	name: "in order, nothing held",
	run: func(r *rig) {
		for q := range uint16(5) {
			r.insert(q, false)
			if len(r.out) != int(q)+1 {
				r.t.Fatalf("seq %d held", q)
			}
		}
	},
	want: []uint16{0, 1, 2, 3, 4},
}, {
	name: "wraps at 65535",
	run: func(r *rig) {
		for _, q := range []uint16{65534, 0, 65535, 1} {
			r.insert(q, false)
		}
	},
	want: []uint16{65534, 65535, 0, 1},
}, {
	name: "reordered, released in order without repair",
	run: func(r *rig) {
		r.insert(1, false)
		r.insert(3, false)
		r.insert(4, false)
		if len(r.out) != 1 {
			r.t.Fatalf("released %v past a gap", r.seqs())
		}
		r.insert(2, false)
	},
	want: []uint16{1, 2, 3, 4},
}, {
	name: "gap skipped at its deadline",
	run: func(r *rig) {
		r.insert(1, false)
		r.insert(3, false)
		r.advance(caseLatency - time.Millisecond)
		if len(r.out) != 1 {
			r.t.Fatal("gap skipped before its deadline")
		}
		r.advance(time.Millisecond)
		r.insert(2, false) // late now
	},
	want:    []uint16{1, 3},
	skipped: 1, late: 1,
}, {
	name:  "gap asked for, asked again, repaired",
	retry: caseRetry,
	run: func(r *rig) {
		r.insert(10, true) // a repair as the first packet asks nothing before it
		r.insert(12, false)
		r.advance(caseRetry)
		r.insert(11, true)
		if len(r.delays) != 1 || r.delays[0] != caseRetry {
			r.t.Fatalf("repair delays %v, want [%v]", r.delays, caseRetry)
		}
	},
	want:     []uint16{10, 11, 12},
	repaired: 1,
	nacked:   []uint16{11, 11},
}, {
	name:  "head probed; probes gone are dropped uncounted",
	retry: caseRetry,
	run: func(r *rig) {
		r.insert(100, false)
		r.b.markGone([]uint16{96, 97, 98}, r)
		r.insert(99, true)
	},
	want:     []uint16{99, 100},
	repaired: 1,
	nacked:   []uint16{96, 97, 98, 99},
}, {
	name:  "gap the cloud says gone is skipped at once",
	retry: caseRetry,
	run: func(r *rig) {
		r.insert(7, true)
		r.insert(9, false)
		r.b.markGone([]uint16{8}, r)
	},
	want:    []uint16{7, 9},
	skipped: 1,
	nacked:  []uint16{8},
}, {
	name:  "tail probed",
	retry: caseRetry,
	run: func(r *rig) {
		r.insert(5, true)
		r.b.probeTail(tailProbes)
		r.takeNacks()
		r.insert(6, true)
		r.advance(caseLatency)
		if r.b.missing != 0 {
			r.t.Fatalf("%d tail probes still open", r.b.missing)
		}
	},
	want:     []uint16{5, 6},
	repaired: 1,
	nacked:   []uint16{6, 7, 8, 9},
}, {
	name: "duplicate and late",
	run: func(r *rig) {
		r.insert(1, false)
		r.insert(1, false)
		r.insert(3, false)
		r.insert(3, false)
		r.insert(0, false)
	},
	want: []uint16{1},
	dup:  2, late: 1,
}, {
	name: "a packet past the window forces the head",
	size: 16,
	run: func(r *rig) {
		r.insert(0, false)
		r.insert(2, false)
		r.insert(17, false)
	},
	want:     []uint16{0, 2},
	overflow: 1,
}, {
	name: "a jump past the whole window starts over",
	size: 16,
	run: func(r *rig) {
		r.insert(0, false)
		r.insert(2, false)
		r.insert(1000, false)
		r.insert(1001, false)
	},
	want:    []uint16{0, 2, 1000, 1001},
	skipped: 1,
}}

func TestBuffer(t *testing.T) {
	for _, tc := range bufferCases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, cmp.Or(tc.size, 4096), caseLatency, tc.retry)
			tc.run(r)
			r.check()
			if got := r.seqs(); !slices.Equal(got, tc.want) {
				t.Fatalf("released %v, want %v", got, tc.want)
			}
			got := [5]int{int(r.gapSkipped), int(r.duplicate), int(r.late), int(r.overflow), int(r.repaired)}
			if want := [5]int{tc.skipped, tc.dup, tc.late, tc.overflow, tc.repaired}; got != want {
				t.Fatalf("skipped, dup, late, overflow, repaired = %v, want %v", got, want)
			}
			if !slices.Equal(r.nacked, tc.nacked) {
				t.Fatalf("NACKed %v, want %v", r.nacked, tc.nacked)
			}
		})
	}
}

// FuzzBuffer drives one buffer alone with arbitrary arrivals, repairs,
// gones, tail probes, clock moves and SSRC changes: it never panics, keeps
// its bookkeeping, never emits a packet twice, emits in sequence order, and
// every packet in is emitted or counted as a duplicate or late.
func FuzzBuffer(f *testing.F) {
	// Hand-written: in order; reordered with a repair; a gap waiting out
	// its deadline; gones and tail probes; a jump past the window; a reset.
	f.Add([]byte{0, 1, 0, 1, 0, 1}, uint8(0), true)
	f.Add([]byte{0, 0, 0, 2, 4, 0xff, 0, 1}, uint8(16), true)
	f.Add([]byte{0, 0, 0, 5, 6, 100, 0, 0xfd}, uint8(40), false)
	f.Add([]byte{0, 0, 1, 3, 7, 0xfe, 8, 7, 0, 6, 50}, uint8(8), true)
	f.Add([]byte{0, 0, 0, 3, 5, 0x40, 0, 0, 1, 9, 0, 0, 2}, uint8(0), false)
	f.Fuzz(func(t *testing.T, ops []byte, size uint8, repairing bool) {
		retry := time.Duration(0)
		if repairing {
			retry = 20 * time.Millisecond
		}
		r := newRig(t, 16+int(size), 80*time.Millisecond, retry)
		if repairing && size%2 == 0 {
			r.env.maxWait = 300 * time.Millisecond // unanswered gaps wait on
		}
		ext := map[*core.Packet]int64{} // the model's sequence number of each packet held or emitted
		sent := 0
		var top int64 // the newest the model has sent, this SSRC
		fresh := true
		dropped := 0 // packets counted duplicate or late
		seen := map[*core.Packet]bool{}
		last, lastSet := int64(0), false
		// collect checks what the buffer emitted since the last call.
		collect := func() {
			for _, p := range r.out {
				if seen[p] {
					t.Fatalf("packet %d emitted twice", ext[p])
				}
				seen[p] = true
				if lastSet && ext[p] <= last {
					t.Fatalf("emitted %d after %d", ext[p], last)
				}
				last, lastSet = ext[p], true
			}
			r.out = r.out[:0]
			r.check()
		}
		// send inserts the packet delta ahead of the newest (behind if
		// negative); the model's numbers unwrap as the buffer's do while
		// they stay within half the 16-bit space of its window.
		send := func(delta int64, repair bool) {
			e := top + delta
			if fresh { // any first number, 65535 and those before it too
				e, fresh = 1<<20+int64(uint8(delta))*257, false
				top = e
			}
			top = max(top, e)
			before := int(r.duplicate + r.late)
			p := r.insert(uint16(e), repair)
			ext[p] = e // a dropped packet's pointer may come back from the pool
			sent++
			dropped += int(r.duplicate+r.late) - before
		}
		for len(ops) >= 2 {
			op, arg := ops[0], ops[1]
			ops = ops[2:]
			switch op % 10 {
			case 0, 1, 2, 3:
				send(int64(int8(arg)), false)
			case 4:
				send(int64(int8(arg)), true)
			case 5:
				send(int64(arg)*100, false) // far ahead: past any window
			case 6:
				r.advance(time.Duration(arg) * time.Millisecond)
			case 7:
				if !fresh {
					seqs := make([]uint16, 0, 4)
					for i := range arg % 5 {
						seqs = append(seqs, uint16(top-int64(i)*int64(arg>>3)))
					}
					r.b.markGone(seqs, r)
				}
			case 8:
				if repairing {
					r.b.probeTail(tailProbes)
					r.takeNacks()
				}
			case 9: // a new SSRC: the stage flushes and resets
				r.b.flush(r)
				collect()
				r.b.reset(uint32(arg))
				fresh, lastSet = true, false
			}
			collect()
		}
		r.b.flush(r)
		collect()
		if r.b.missing != 0 {
			t.Fatalf("%d gaps open after flush", r.b.missing)
		}
		if len(seen)+dropped != sent {
			t.Fatalf("%d in, %d emitted + %d duplicate or late", sent, len(seen), dropped)
		}
	})
}
