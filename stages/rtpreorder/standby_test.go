package rtpreorder

import (
	"bytes"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
)

// A stream handed from the primary cloud to a standby (a new SSRC, the same
// core.Stream): each SSRC's gaps are repaired by the cloud that sends it,
// from retransmit's list; none is asked of a cloud that does not know it.
func TestRepairFromTheCloudThatSends(t *testing.T) {
	primary, standby := cloud(t, "tok", 1000), cloud(t, "tok", 1000)
	ringA := primary.Stream(0xA, core.NewStream("live/s"))
	ringB := standby.Stream(0xB, core.NewStream("live/s"))
	for q := uint16(0); q < 100; q++ {
		ringA.Insert(q, rtpPacket(q, 0xA, 500))
		ringB.Insert(q+1000, rtpPacket(q+1000, 0xB, 500))
	}
	s, h, _ := start(t, map[string]any{
		"retransmit": []any{primary.Addr().String(), standby.Addr().String()},
		"token":      "tok", "latency": "2s",
	}, true)
	testrunConnectedBoth(t, s)
	st := h.StartStream("live/s")
	var want [][]byte
	for q := uint16(0); q < 100; q++ {
		want = append(want, rtpPacket(q, 0xA, 500))
		if q%10 != 5 {
			h.SendData(st, 0, 0, want[len(want)-1])
		}
	}
	// The standby takes over only once the primary has been quiet (as
	// udp-source hands a name over): its gaps were settled by then.
	h.Out.WaitData(100, 5*time.Second)
	for q := uint16(1000); q < 1100; q++ {
		want = append(want, rtpPacket(q, 0xB, 500))
		if q%10 != 7 {
			h.SendData(st, 0, 0, want[len(want)-1])
		}
	}
	got := h.Out.WaitData(len(want), 5*time.Second)
	var data [][]byte
	for _, p := range got {
		if p.Stream == st {
			data = append(data, p.Data)
		}
	}
	if len(data) != len(want) {
		var q []uint16
		for _, d := range data {
			q = append(q, seqOf(d))
		}
		t.Fatalf("%d packets out, want %d (repaired %v, skipped %v): %v", len(data), len(want), core.CounterValue(s.repaired), s.gapSkipped.Value(), q)
	}
	for i := range want {
		if !bytes.Equal(data[i], want[i]) {
			t.Fatalf("packet %d differs", i)
		}
	}
	if r := core.CounterValue(s.repaired); r != 20 {
		t.Fatalf("repaired %v, want 20", r)
	}
}

func testrunConnectedBoth(t *testing.T, s *Stage) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := s.shared.Load()
		if c != nil && c.connected.Load() == 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("not connected to both repair servers")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
