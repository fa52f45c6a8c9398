package repair

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/announce"
	"github.com/mediapipe/mediapipe/core/media/repairwire"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// TestReportsKeptPerEdge: an edge's report reaches the server's table with
// an RTT from LSR/DLSR; floods, unknown SSRCs and junk are refused and
// counted; the edge's state goes when it disconnects.
func TestReportsKeptPerEdge(t *testing.T) {
	srv := startServer(t, ServerConfig{})
	srv.Stream(0xabc, core.NewStream("live/a"))
	r := newReplies()
	c := dial(t, r.config(srv.Addr().String(), ""))
	connected(t, c)
	testrun.Eventually(t, 5*time.Second, "edge listed", func() bool { return len(srv.Edges()) == 1 })

	// The SR left 300 ms ago and the edge held it 100 ms: RTT ≈ 200 ms.
	now := time.Now()
	lsr := uint32(announce.NTP(now.Add(-300*time.Millisecond)) >> 16)
	rep := repairwire.Report{RR: rtcp.ReceptionReport{SSRC: 0xabc, FractionLost: 13, TotalLost: 40, LastSequenceNumber: 1000, Jitter: 3,
		LastSenderReport: lsr, Delay: 65536 / 10}, Repaired: 38, Skipped: 2, WaitMeanUS: 20000, WaitMaxUS: 50000, Delivered: 250000}
	if err := c.Report(rep); err != nil {
		t.Fatal(err)
	}
	var e EdgeState
	testrun.Eventually(t, 5*time.Second, "report kept", func() bool {
		es := srv.Edges()
		if len(es) == 1 && len(es[0].Reports) == 1 {
			e = es[0]
			return true
		}
		return false
	})
	got := e.Reports[0]
	if got.Stream != "live/a" || got.Report != rep || !e.Reporting || e.Slot != 0 {
		t.Fatalf("kept %+v in %+v", got, e)
	}
	if got.RTT < 150*time.Millisecond || got.RTT > 400*time.Millisecond {
		t.Fatalf("RTT %v, want about 200ms", got.RTT)
	}

	// Too soon after the last, and an SSRC the cloud does not send: refused.
	rep.RR.FractionLost = 99
	_ = c.Report(rep)
	other := rep
	other.RR.SSRC = 0x999
	_ = c.Report(other)
	testrun.Eventually(t, 5*time.Second, "refusals counted", func() bool { return srv.Stats().Get(EvBadReport) == 2 })
	if es := srv.Edges(); es[0].Reports[0].RR.FractionLost != 13 || len(es[0].Reports) != 1 {
		t.Fatalf("a refused report changed the table: %+v", es[0].Reports)
	}
	if n := srv.Stats().Get(EvReport); n != 1 {
		t.Fatalf("reports kept %d, want 1", n)
	}

	_ = c.Close()
	testrun.Eventually(t, 5*time.Second, "edge forgotten", func() bool { return len(srv.Edges()) == 0 })
}

// TestReportJunkResetsOnlyItsStream: a malformed REPORT resets its stream
// and is counted; the connection and its repairs live on.
func TestReportJunkResetsOnlyItsStream(t *testing.T) {
	srv := startServer(t, ServerConfig{})
	ring := srv.Stream(0xabc, core.NewStream("live/a"))
	ring.Insert(5, pkt(5, 0xabc, 100))
	r := newReplies()
	c := dial(t, r.config(srv.Addr().String(), ""))
	connected(t, c)
	s := c.session()
	st, err := s.conn.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write(repairwire.AppendFrame(nil, repairwire.FrameReport, make([]byte, repairwire.ReportSize))); err != nil {
		t.Fatal(err)
	}
	testrun.Eventually(t, 5*time.Second, "junk counted", func() bool { return srv.Stats().Get(EvBadReport) == 1 })
	if err := c.Nack(0xabc, []uint16{5}); err != nil {
		t.Fatal(err)
	}
	r.wait(t, "repair after junk", func() bool { return len(r.repaired) == 1 })
}

// TestOldServerTakesNoReports: a server that predates REPORT resets the
// report stream; the client stops reporting on that connection and its
// repairs work as before.
func TestOldServerTakesNoReports(t *testing.T) {
	srv := startServer(t, ServerConfig{})
	srv.oldProtocol.Store(true)
	ring := srv.Stream(0xabc, core.NewStream("live/a"))
	ring.Insert(5, pkt(5, 0xabc, 100))
	r := newReplies()
	c := dial(t, r.config(srv.Addr().String(), ""))
	connected(t, c)
	rep := repairwire.Report{RR: rtcp.ReceptionReport{SSRC: 0xabc}}
	testrun.Eventually(t, 5*time.Second, "reports given up", func() bool { return errors.Is(c.Report(rep), ErrNoReports) })
	if err := c.Nack(0xabc, []uint16{5}); err != nil {
		t.Fatal(err)
	}
	r.wait(t, "repair", func() bool { return len(r.repaired) == 1 })
	if !c.Connected() {
		t.Fatal("connection lost")
	}
}

// TestReportsBounded: one edge reporting more SSRCs than MaxReportsPerPeer
// gets the rest refused and counted; a new connection reuses the slot of
// one that went.
func TestReportsBounded(t *testing.T) {
	srv := startServer(t, ServerConfig{})
	n := MaxReportsPerPeer + 20
	for i := range n {
		srv.Stream(uint32(1000+i), core.NewStream(fmt.Sprintf("live/%d", i)))
	}
	r := newReplies()
	c := dial(t, r.config(srv.Addr().String(), ""))
	connected(t, c)
	for i := range n {
		// A full send window (ErrBusy) drains in a moment.
		testrun.Eventually(t, 5*time.Second, "report sent", func() bool {
			return c.Report(repairwire.Report{RR: rtcp.ReceptionReport{SSRC: uint32(1000 + i)}}) == nil
		})
	}
	testrun.Eventually(t, 5*time.Second, "all reports handled", func() bool {
		st := srv.Stats()
		return st.Get(EvReport)+st.Get(EvBadReport) == uint64(n)
	})
	if got := srv.Stats().Get(EvBadReport); got != 20 {
		t.Fatalf("refused %d, want 20", got)
	}
	if es := srv.Edges(); len(es) != 1 || len(es[0].Reports) != MaxReportsPerPeer {
		t.Fatalf("kept %d reports", len(es[0].Reports))
	}
	_ = c.Close()
	testrun.Eventually(t, 5*time.Second, "edge forgotten", func() bool { return len(srv.Edges()) == 0 })
	c2 := dial(t, r.config(srv.Addr().String(), ""))
	connected(t, c2)
	testrun.Eventually(t, 5*time.Second, "new edge in slot 0", func() bool {
		es := srv.Edges()
		return len(es) == 1 && es[0].Slot == 0 && !es[0].Reporting
	})
}

// TestStaleReportsForgotten: a stream the edge stopped reporting (ended
// there, or moved to another cloud) leaves the table while the edge stays.
func TestStaleReportsForgotten(t *testing.T) {
	var skew atomic.Int64
	srv := startServer(t, ServerConfig{Now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }})
	srv.Stream(0xabc, core.NewStream("live/a"))
	r := newReplies()
	c := dial(t, r.config(srv.Addr().String(), ""))
	connected(t, c)
	if err := c.Report(repairwire.Report{RR: rtcp.ReceptionReport{SSRC: 0xabc}}); err != nil {
		t.Fatal(err)
	}
	testrun.Eventually(t, 5*time.Second, "report kept", func() bool { es := srv.Edges(); return len(es) == 1 && len(es[0].Reports) == 1 })
	skew.Store(int64(ReportStale + time.Second))
	if es := srv.Edges(); len(es) != 1 || len(es[0].Reports) != 0 || es[0].Reporting {
		t.Fatalf("stale report kept: %+v", es)
	}
}
