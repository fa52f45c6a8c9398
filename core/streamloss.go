package core

import (
	"sync"
	"sync/atomic"
	"time"
)

// StreamLoss is one stream's packet loss as an edge sees it, counted by the
// stage that repairs it (rtp-reorder) and exported per stream.
type StreamLoss struct {
	Lost     atomic.Uint64 // packets missing on arrival (gaps found)
	Repaired atomic.Uint64 // recovered from the cloud's cache in time
	Skipped  atomic.Uint64 // given up on: a gap in what viewers get
}

// LossReporter is implemented by stages that count loss per stream; the
// host exports the figures as mediapipe_stream_{lost,repaired,skipped}_packets_total.
type LossReporter interface {
	ReportLoss(report func(stream string, l *StreamLoss))
}

// LossSet keeps the StreamLoss of each live stream of a stage: its owner
// adds and removes on its own goroutine, the metrics read from another.
type LossSet struct {
	mu sync.Mutex
	m  map[*Stream]*StreamLoss
}

// Add keeps l as st's figures.
func (s *LossSet) Add(st *Stream, l *StreamLoss) {
	s.mu.Lock()
	if s.m == nil {
		s.m = map[*Stream]*StreamLoss{}
	}
	s.m[st] = l
	s.mu.Unlock()
}

// Remove forgets st (its series end with it).
func (s *LossSet) Remove(st *Stream) {
	s.mu.Lock()
	delete(s.m, st)
	s.mu.Unlock()
}

// Each calls report for every stream kept.
func (s *LossSet) Each(report func(stream string, l *StreamLoss)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for st, l := range s.m {
		report(st.Name, l)
	}
}

// StreamLatency is how long after the cloud sent a stream's tags an edge
// had them ready for viewers (repair waits included), smoothed; measured
// by flv-reassembler from the stream's SenderClock.
type StreamLatency struct {
	ns atomic.Int64 // exponentially weighted, 1/8 per tag; 0: none yet
}

// Observe adds one tag's latency.
func (l *StreamLatency) Observe(d time.Duration) {
	old := l.ns.Load()
	if old == 0 {
		l.ns.Store(int64(d))
		return
	}
	l.ns.Store(old + (int64(d)-old)/8)
}

// Seconds is the smoothed latency; false before the first tag.
func (l *StreamLatency) Seconds() (float64, bool) {
	ns := l.ns.Load()
	return float64(ns) / 1e9, ns != 0
}

// LatencyReporter is implemented by stages that measure latency per
// stream; the host exports it as mediapipe_stream_latency_seconds.
type LatencyReporter interface {
	ReportLatency(report func(stream string, l *StreamLatency))
}

// LatencySet keeps each live stream's StreamLatency, as LossSet does loss.
type LatencySet struct {
	mu sync.Mutex
	m  map[*Stream]*StreamLatency
}

// Add keeps l as st's latency.
func (s *LatencySet) Add(st *Stream, l *StreamLatency) {
	s.mu.Lock()
	if s.m == nil {
		s.m = map[*Stream]*StreamLatency{}
	}
	s.m[st] = l
	s.mu.Unlock()
}

// Remove forgets st.
func (s *LatencySet) Remove(st *Stream) {
	s.mu.Lock()
	delete(s.m, st)
	s.mu.Unlock()
}

// Each calls report for every stream kept.
func (s *LatencySet) Each(report func(stream string, l *StreamLatency)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for st, l := range s.m {
		report(st.Name, l)
	}
}
