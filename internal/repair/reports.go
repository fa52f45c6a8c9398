package repair

import (
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mediapipe/mediapipe/core/media/announce"
	"github.com/mediapipe/mediapipe/core/media/repairwire"
)

// Report bounds: a peer's reports are kept per SSRC, one each, for at most
// MaxReportsPerPeer SSRCs; one arriving sooner than MinReportGap after the
// last of its SSRC is dropped, so an edge that floods reports costs a
// parse and a counter, never memory or work beyond that.
const (
	MaxReportsPerPeer = 256
	MinReportGap      = 400 * time.Millisecond
	// ReportStale: a stream not reported for this long (it ended at the
	// edge, or moved to another cloud) is forgotten.
	ReportStale = 5 * time.Second
)

// StreamReport is the latest report of one stream from one edge, with what
// the cloud derived from it.
type StreamReport struct {
	SSRC   uint32
	Stream string    // the name the cloud knows the SSRC by
	At     time.Time // when it arrived
	repairwire.Report
	// RTT is now − LSR − DLSR at arrival (RFC 3550 §6.4.1); 0 when the edge
	// had no sender report yet (LSR 0) or the figures do not add up.
	RTT time.Duration
}

// FractionLost is the report's fraction lost as a number in [0, 1].
func (r StreamReport) FractionLost() float64 { return float64(r.RR.FractionLost) / 256 }

// EdgeState is one connected edge and its latest reports.
type EdgeState struct {
	Slot    int    // 0 … MaxPeers-1, reused after the peer goes: a bounded label
	Addr    string // the peer's address (IP:port)
	Since   time.Time
	Reports []StreamReport // by SSRC
	// Reporting is false while the edge has sent no report (an old edge,
	// or one just connected).
	Reporting bool
}

// edgeReports is one peer's report table.
type edgeReports struct {
	slot  int
	addr  string
	since time.Time
	mu    sync.Mutex
	m     map[uint32]*StreamReport
	// share is the peer's part of the server's total rate in bytes/s (-1:
	// none); repaired the bytes of packets repaired to it.
	share    atomic.Int64
	repaired atomic.Uint64
}

// addEdge registers an admitted peer under the lowest free slot.
func (s *Server) addEdge(addr string, now time.Time) *edgeReports {
	s.edgeMu.Lock()
	defer s.edgeMu.Unlock()
	slot := 0
	for ; ; slot++ {
		if _, used := s.edges[slot]; !used {
			break
		}
	}
	e := &edgeReports{slot: slot, addr: addr, since: now, m: map[uint32]*StreamReport{}}
	s.edges[slot] = e
	s.reshare()
	return e
}

// dropEdge forgets a peer that went, and its reports.
func (s *Server) dropEdge(e *edgeReports) {
	s.edgeMu.Lock()
	delete(s.edges, e.slot)
	delete(s.shares, e.slot) // a newcomer in the slot starts with an equal share
	s.reshare()
	s.edgeMu.Unlock()
}

// report takes one REPORT payload from a peer. It returns false when the
// payload is malformed (the stream is then reset); refused reports are
// counted either way.
func (s *Server) report(e *edgeReports, payload []byte) bool {
	r, err := repairwire.ParseReport(payload)
	if err != nil {
		s.count(EvBadReport, 1)
		return false
	}
	ssrc := r.RR.SSRC
	s.mu.RLock()
	c := s.streams[ssrc]
	name := ""
	if c != nil && c.stream != nil {
		name = c.stream.Name
	}
	s.mu.RUnlock()
	if c == nil {
		// Not a stream this cloud sends: nothing to learn from it.
		s.count(EvBadReport, 1)
		return true
	}
	now := s.cfg.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.m[ssrc]
	if old == nil && len(e.m) >= MaxReportsPerPeer {
		e.dropStale(now)
	}
	switch {
	case old == nil && len(e.m) >= MaxReportsPerPeer,
		old != nil && now.Sub(old.At) < MinReportGap:
		s.count(EvBadReport, 1)
		return true
	}
	if old == nil {
		old = &StreamReport{}
		e.m[ssrc] = old
	}
	*old = StreamReport{SSRC: ssrc, Stream: name, At: now, Report: r, RTT: rtt(now, r)}
	s.count(EvReport, 1)
	return true
}

// rtt is RFC 3550's round trip from a report's LSR and DLSR, in the middle
// 32 bits of NTP time (1/65536 s).
func rtt(now time.Time, r repairwire.Report) time.Duration {
	if r.RR.LastSenderReport == 0 {
		return 0
	}
	mid := uint32(announce.NTP(now) >> 16)
	d := mid - r.RR.LastSenderReport - r.RR.Delay
	if d > 1<<31 { // negative: clocks or figures do not add up
		return 0
	}
	return time.Duration(uint64(d) * uint64(time.Second) >> 16)
}

// Edges returns the connected edges by slot, each with its latest report
// per stream (copies: the caller may keep them).
func (s *Server) Edges() []EdgeState {
	s.edgeMu.Lock()
	list := make([]*edgeReports, 0, len(s.edges))
	for _, e := range s.edges {
		list = append(list, e)
	}
	s.edgeMu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].slot < list[j].slot })
	out := make([]EdgeState, 0, len(list))
	now := s.cfg.Now()
	for _, e := range list {
		st := EdgeState{Slot: e.slot, Addr: e.addr, Since: e.since}
		e.mu.Lock()
		e.dropStale(now)
		for _, r := range e.m {
			st.Reports = append(st.Reports, *r)
		}
		e.mu.Unlock()
		slices.SortFunc(st.Reports, func(a, b StreamReport) int {
			switch {
			case a.SSRC < b.SSRC:
				return -1
			case a.SSRC > b.SSRC:
				return 1
			}
			return 0
		})
		st.Reporting = len(st.Reports) > 0
		out = append(out, st)
	}
	return out
}

// dropStale forgets the streams not reported for ReportStale (e.mu held).
func (e *edgeReports) dropStale(now time.Time) {
	for ssrc, r := range e.m {
		if now.Sub(r.At) > ReportStale {
			delete(e.m, ssrc)
		}
	}
}
