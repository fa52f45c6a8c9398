package repair

import "fmt"

// A shared repair budget (quic-retransmit's total_rate): with a total set,
// each peer's limit is min(MaxRate, its share). A share is the rate the
// controller set for the peer's slot (SetShares), or else an equal part of
// what the set ones leave among the peers without one. The shares are
// recomputed when the total, the set rates or the peers change, and stored
// in each peer's edgeReports, so a request reads one atomic more.

// SetTotalRate changes the bytes/s of repairs shared among all peers (0: no
// shared budget, each peer limited by the max rate alone).
func (s *Server) SetTotalRate(rate int) error {
	if rate < 0 {
		return fmt.Errorf("repair: total rate %d is negative", rate)
	}
	s.edgeMu.Lock()
	s.totalRate = rate
	s.reshare()
	s.edgeMu.Unlock()
	return nil
}

// TotalRate is the shared budget in bytes/s (0: none).
func (s *Server) TotalRate() int {
	s.edgeMu.Lock()
	defer s.edgeMu.Unlock()
	return s.totalRate
}

// SetShares sets the repair rate of the listed slots (bytes/s); the other
// connected peers share what is left equally. Slots not connected are
// ignored; a slot's rate is forgotten when its peer goes.
func (s *Server) SetShares(rates map[int]int) {
	s.edgeMu.Lock()
	clear(s.shares)
	for slot, r := range rates {
		if _, ok := s.edges[slot]; ok {
			s.shares[slot] = max(r, 0)
		}
	}
	s.reshare()
	s.edgeMu.Unlock()
}

// RepairedBytes returns the bytes of repaired packets sent so far to each
// connected peer, by slot.
func (s *Server) RepairedBytes() map[int]uint64 {
	s.edgeMu.Lock()
	defer s.edgeMu.Unlock()
	out := make(map[int]uint64, len(s.edges))
	for slot, e := range s.edges {
		out[slot] = e.repaired.Load()
	}
	return out
}

// reshare recomputes every peer's share (edgeMu held): -1 when there is no
// budget to share.
func (s *Server) reshare() {
	if s.totalRate <= 0 {
		for _, e := range s.edges {
			e.share.Store(-1)
		}
		return
	}
	left, free := s.totalRate, 0
	for slot := range s.edges {
		if r, ok := s.shares[slot]; ok {
			left -= r
		} else {
			free++
		}
	}
	equal := 0
	if free > 0 {
		equal = max(left, 0) / free
	}
	for slot, e := range s.edges {
		r, ok := s.shares[slot]
		if !ok {
			r = equal
		}
		e.share.Store(int64(min(r, s.totalRate)))
	}
}
