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

// StreamSet keeps a figure (StreamLoss, StreamLatency) of each live stream
// of a stage: its owner adds and removes on its own goroutine, the
// metrics read from another.
type StreamSet[T any] struct {
	mu sync.Mutex
	m  map[*Stream]*T
}

// LossSet and LatencySet are the sets the reporters above keep.
type (
	LossSet    = StreamSet[StreamLoss]
	LatencySet = StreamSet[StreamLatency]
)

// Add keeps v as st's figure.
func (s *StreamSet[T]) Add(st *Stream, v *T) {
	s.mu.Lock()
	if s.m == nil {
		s.m = map[*Stream]*T{}
	}
	s.m[st] = v
	s.mu.Unlock()
}

// Remove forgets st (its series end with it).
func (s *StreamSet[T]) Remove(st *Stream) {
	s.mu.Lock()
	delete(s.m, st)
	s.mu.Unlock()
}

// Each calls report for every stream kept.
func (s *StreamSet[T]) Each(report func(stream string, v *T)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for st, v := range s.m {
		report(st.Name, v)
	}
}
