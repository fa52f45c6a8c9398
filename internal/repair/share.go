package repair

import "fmt"

// A shared repair budget (quic-retransmit's total_rate): with a total set,
// each peer's limit is min(MaxRate, its share). A share is the rate the
// controller set for the peer's slot (SetShares), or else an equal part of
// what the set ones leave among the peers without one but never less than
// total / peers (the set rates are then scaled down to fit). The shares are
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
// connected peers share what is left equally, with at least total / peers
// each (see reshare), and rates beyond the total are scaled down to fit it.
// Slots not connected are ignored; a slot's rate is forgotten when its peer
// goes.
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
//
// The controller hands out the whole total, so a peer that connects between
// its rounds would find nothing left and be refused every repair until the
// next round: a peer without a set rate gets at least an equal part of the
// total (total / connected peers), more if the set rates leave more, and the
// set rates are scaled down in proportion to fit what remains. Set rates
// that add up to more than the total (a policy answering 1 for everyone, a
// reload lowering the total) are scaled to fit the same way.
func (s *Server) reshare() {
	if s.totalRate <= 0 {
		for _, e := range s.edges {
			e.share.Store(-1)
		}
		return
	}
	if len(s.edges) == 0 {
		return
	}
	var set float64 // sum of the set rates; float so huge ones cannot overflow
	free := 0
	for slot := range s.edges {
		if r, ok := s.shares[slot]; ok {
			set += float64(r)
		} else {
			free++
		}
	}
	equal := 0
	if free > 0 {
		floor := s.totalRate / len(s.edges)
		equal = max(floor, (s.totalRate-int(min(set, float64(s.totalRate))))/free)
	}
	budget := s.totalRate - free*equal // left for the set rates, ≥ 0
	scale := 1.0
	if set > float64(budget) {
		scale = float64(budget) / set
	}
	for slot, e := range s.edges {
		r, ok := s.shares[slot]
		if !ok {
			e.share.Store(int64(equal))
			continue
		}
		if scale < 1 {
			r = int(float64(r) * scale) // rounded down: the sum stays within the total
		}
		e.share.Store(int64(min(r, s.totalRate)))
	}
}
