package rtpreorder

import (
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
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
