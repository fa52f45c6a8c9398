package rtpreorder

import (
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/stagetest"
)

// insertFEC inserts seq as fec-decoder passes it on: with its hint.
func (r *rig) insertFEC(seq uint16, fec core.FECHint, rebuilt bool) {
	p := core.NewPacket(2)
	p.Data[0], p.Data[1] = byte(seq>>8), byte(seq)
	p.FEC, p.Rebuilt = fec, rebuilt
	r.b.insert(p, seq, false, r)
	r.takeNacks()
}

// TestFECHoldsAsk: a gap fec-decoder may still rebuild is not asked for
// until its group's parity is due; one rebuilt meanwhile is never asked
// for; one whose group is settled (past From) is asked at once; the hold
// is capped at half the latency; without a hint a gap is asked at once.
func TestFECHoldsAsk(t *testing.T) {
	// Repairs never come; the retry is past the test's span, so every
	// ask seen is a first one.
	r := newRig(t, 256, 150*time.Millisecond, time.Second)
	r.b.fromStart = true // no head probes
	hint := func(from uint16, hold time.Duration) core.FECHint {
		return core.FECHint{Hold: hold, From: from, On: true}
	}
	r.insertFEC(0, hint(0, 30*time.Millisecond), false)
	r.insertFEC(2, hint(0, 30*time.Millisecond), false) // 1 lost: held
	if len(r.nacked) != 0 {
		t.Fatalf("asked %v while FEC may rebuild it", r.nacked)
	}
	r.advance(10 * time.Millisecond)
	r.insertFEC(1, core.FECHint{}, true)                // rebuilt
	r.insertFEC(4, hint(0, 20*time.Millisecond), false) // 3 lost: held
	r.advance(10 * time.Millisecond)
	if len(r.nacked) != 0 {
		t.Fatalf("asked %v while FEC may rebuild it", r.nacked)
	}
	r.insertFEC(5, hint(4, 30*time.Millisecond), false) // the group 0..3 settled, 3 not rebuilt
	equal(t, r.nacked, []uint16{3})
	r.insertFEC(7, hint(4, 30*time.Millisecond), false) // 6 lost: held 30 ms
	r.advance(29 * time.Millisecond)
	equal(t, r.nacked, []uint16{3})
	r.advance(time.Millisecond)
	equal(t, r.nacked, []uint16{3, 6})

	// A hint beyond half the latency waits half the latency.
	r.insertFEC(9, hint(4, time.Second), false) // 8 lost
	r.advance(74 * time.Millisecond)
	equal(t, r.nacked, []uint16{3, 6})
	r.advance(time.Millisecond)
	equal(t, r.nacked, []uint16{3, 6, 8})

	// No hint (no parity on this stream): asked at once, as without FEC.
	r.insertFEC(11, core.FECHint{}, false)
	equal(t, r.nacked, []uint16{3, 6, 8, 10})
	// A gap before From, found now, is past FEC: asked at once.
	r.insertFEC(13, hint(14, 30*time.Millisecond), false)
	equal(t, r.nacked, []uint16{3, 6, 8, 10, 12})
	if r.rebuilt != 1 {
		t.Fatalf("rebuilt %d", r.rebuilt)
	}
}

// TestFECHoldEnds: a stream that ends with a gap held for FEC leaves no
// hold behind; a restart starts without one.
func TestFECHoldEnds(t *testing.T) {
	r := newRig(t, 256, 150*time.Millisecond, 20*time.Millisecond)
	r.insertFEC(0, core.FECHint{Hold: 30 * time.Millisecond, On: true}, false)
	r.insertFEC(2, core.FECHint{Hold: 30 * time.Millisecond, On: true}, false)
	if r.b.heldEnd == 0 {
		t.Fatal("no gap held")
	}
	r.b.flush(r)
	if r.b.heldEnd != 0 || r.b.missing != 0 {
		t.Fatalf("after flush: heldEnd %d missing %d", r.b.heldEnd, r.b.missing)
	}
}

// BenchmarkReorderFECLoss: one packet in 20 lost, each gap held for FEC
// and rebuilt: the per-packet path does not allocate.
func BenchmarkReorderFECLoss(b *testing.B) {
	r := newRig(b, 4096, 150*time.Millisecond, 20*time.Millisecond)
	r.env.repairDelay = func(time.Duration) {}
	r.b.fromStart = true
	var out stagetest.Discard
	hint := core.FECHint{Hold: 30 * time.Millisecond, On: true}
	pkt := rtpPacket(0, 9, 1180)
	send := func(seq uint16, fec core.FECHint, rebuilt bool) {
		p := core.NewPacket(len(pkt))
		copy(p.Data, pkt)
		p.Data[2], p.Data[3] = byte(seq>>8), byte(seq)
		p.FEC, p.Rebuilt = fec, rebuilt
		r.b.insert(p, seq, false, out)
	}
	b.ReportAllocs()
	seq := uint16(0)
	for b.Loop() {
		if seq%20 == 5 {
			seq++
			continue
		}
		send(seq, hint, false)
		if seq%20 == 8 { // the lost one, rebuilt
			send(seq-3, core.FECHint{}, true)
		}
		r.b.pending, r.b.dirty = r.b.pending[:0], false
		seq++
	}
}

// TestFECHoldLeavesRoundTrip: the hold leaves room for the repair's round
// trip: with latency 150 ms and an 80 ms repair timeout a held gap is
// asked by 70 ms (not at half the latency, 75 ms, whose repair would come
// after the deadline); with a timeout past the wait it is asked at once.
func TestFECHoldLeavesRoundTrip(t *testing.T) {
	r := newRig(t, 256, 150*time.Millisecond, time.Second)
	r.b.fromStart = true
	rto := 80 * time.Millisecond
	r.env.rto = func() time.Duration { return rto }
	hint := core.FECHint{Hold: time.Second, On: true}
	r.insertFEC(0, hint, false)
	r.insertFEC(2, hint, false) // 1 lost: held 150−80 = 70 ms
	r.advance(69 * time.Millisecond)
	equal(t, r.nacked, nil)
	r.advance(time.Millisecond)
	equal(t, r.nacked, []uint16{1})

	rto = 200 * time.Millisecond // longer than the wait: no room to hold
	r.insertFEC(4, hint, false)  // 3 lost
	equal(t, r.nacked, []uint16{1, 3})
}
