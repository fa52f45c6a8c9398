package core

import (
	"sync"
	"sync/atomic"
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
