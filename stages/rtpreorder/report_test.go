package rtpreorder

import (
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/rtpheader"
)

// TestReceiverReportFigures: loss per interval and in total, the extended
// sequence across the wrap, jitter, LSR/DLSR and the edge's own figures.
func TestReceiverReportFigures(t *testing.T) {
	st := core.NewStream("live/a")
	b := &buffer{stream: st, ssrc: 7, loss: new(core.StreamLoss)}
	t0 := time.Unix(1_800_000_000, 0)
	now := t0
	b.rr.reportedAt = t0 // as the previous report (of another SSRC) left it
	// 200 packets from 65436 across the wrap, every 10th lost, 10 ms
	// apart in both clocks (no jitter), 1000 bytes each.
	for i := range 200 {
		now = t0.Add(time.Duration(i) * 10 * time.Millisecond)
		if i%10 == 5 {
			continue
		}
		b.rr.arrive(uint16(65436+i), uint32(i*10), 1000, now.UnixNano())
	}
	b.rr.repaired(1000, 30*time.Millisecond)
	b.rr.repaired(1000, 50*time.Millisecond)
	b.loss.Repaired.Store(2)
	b.loss.Skipped.Store(18)
	st.SetSenderClock(&core.SenderClock{SSRC: 7, NTP: 0x0001_2345_6789_0000, Arrived: now.Add(-500 * time.Millisecond)})
	rep := b.rr.report(b, now)
	rr := rep.RR
	if rr.SSRC != 7 || rr.LastSequenceNumber != 1<<16+99 || rr.TotalLost != 20 {
		t.Fatalf("rr %+v", rr)
	}
	if rr.FractionLost != 25 { // 20/200 × 256 = 25.6
		t.Fatalf("fraction %d, want 25", rr.FractionLost)
	}
	if rr.Jitter != 0 {
		t.Fatalf("jitter %d with even spacing", rr.Jitter)
	}
	if rr.LastSenderReport != 0x2345_6789 || rr.Delay != 65536/2 {
		t.Fatalf("lsr %#x dlsr %d", rr.LastSenderReport, rr.Delay)
	}
	if rep.Repaired != 2 || rep.Skipped != 18 || rep.WaitMeanUS != 40000 || rep.WaitMaxUS != 50000 {
		t.Fatalf("edge figures %+v", rep)
	}
	// 182 packets' bytes over 1.99 s.
	if want := uint64(91457); rep.Delivered < want-100 || rep.Delivered > want+100 {
		t.Fatalf("delivered %d B/s, want ~%d", rep.Delivered, want)
	}

	// Next interval: no loss, packets 20 ms apart against 10 ms of
	// timestamps: jitter grows toward 10 ms; the fraction is this
	// interval's, the total stays.
	for i := 200; i < 300; i++ {
		now = now.Add(20 * time.Millisecond)
		b.rr.arrive(uint16(65436+i), uint32(i*10), 1000, now.UnixNano())
	}
	rep = b.rr.report(b, now)
	if rep.RR.FractionLost != 0 || rep.RR.TotalLost != 20 || rep.RR.Jitter < 9 || rep.RR.Jitter > 10 {
		t.Fatalf("second interval %+v", rep.RR)
	}
	if rep.WaitMeanUS != 0 || rep.WaitMaxUS != 0 {
		t.Fatalf("waits not reset: %+v", rep)
	}
}

// TestReportLossBeforeFEC: packets fec-decoder rebuilt are delivered but
// reported lost, and duplicates (a packet that came twice, late or within
// the window) are not counted as received: the fraction lost an edge
// reports is the path's loss before FEC and repair, which is what a
// controller setting the parity must see. (Counting rebuilt packets as
// received reported no loss while FEC covered it all, so the controller
// dropped the parity and the loss came back.)
func TestReportLossBeforeFEC(t *testing.T) {
	r := newRig(t, 256, 100*time.Millisecond, 0)
	r.b.stream, r.b.loss = core.NewStream("live/fec"), new(core.StreamLoss)
	now := time.Unix(1_800_000_000, 0)
	send := func(seq uint16, rebuilt bool) {
		p := core.NewPacket(rtpheader.Size + 100)
		rtpheader.Put(p.Data, rtpheader.Header{PayloadType: 100, Seq: seq, Timestamp: uint32(seq), SSRC: 1})
		p.Rebuilt = rebuilt
		r.b.insert(p, seq, false, r)
	}
	for q := range uint16(200) {
		send(q, q%10 == 3) // 10 % lost on the path, all rebuilt by FEC
		if q%20 == 19 {
			send(q-1, false) // a duplicate of a released packet
			send(q-5, false)
		}
	}
	if len(r.out) != 200 {
		t.Fatalf("%d packets delivered, want 200", len(r.out))
	}
	rep := r.b.rr.report(r.b, now)
	if rep.RR.TotalLost != 20 || rep.RR.FractionLost != 25 { // 20/200 × 256 = 25.6
		t.Fatalf("reported lost %d (fraction %d/256), want 20 (25/256): the loss before FEC", rep.RR.TotalLost, rep.RR.FractionLost)
	}
	if r.rebuilt != 20 {
		t.Fatalf("fec_rebuilt %d, want 20", r.rebuilt)
	}
	if r.duplicate != 20 {
		t.Fatalf("duplicates %d, want 20", r.duplicate)
	}
}
