package core

import (
	"math"
	"slices"
	"sort"
	"time"
)

// EdgeStream is one stream's latest report from one edge (over the repair
// connection, docs/protocol.md REPORT), with what the cloud derived.
type EdgeStream struct {
	Stream         string    `json:"stream"`
	SSRC           uint32    `json:"ssrc"`
	At             time.Time `json:"at"`
	FractionLost   float64   `json:"fraction_lost"`   // 0–1, over the last report's interval, before repair
	CumulativeLost uint32    `json:"cumulative_lost"` // packets
	HighestSeq     uint32    `json:"highest_seq"`     // extended
	JitterMS       float64   `json:"jitter_ms"`
	RTTSeconds     float64   `json:"rtt_seconds"` // 0: not known yet (no sender report reached the edge)
	Repaired       uint32    `json:"repaired"`
	Skipped        uint32    `json:"skipped"`
	WaitMeanMS     float64   `json:"repair_wait_mean_ms"`
	WaitMaxMS      float64   `json:"repair_wait_max_ms"`
	DeliveryBps    uint64    `json:"delivery_bytes_per_second"`
}

// Edge is one edge connected to a cloud's repair server.
type Edge struct {
	ID      int          `json:"id"` // 0 … max_peers-1, reused once the edge goes: a bounded label
	Addr    string       `json:"addr"`
	Since   time.Time    `json:"connected_since"`
	Streams []EdgeStream `json:"streams"`
}

// Spread summarises one figure over the edges that reported it.
type Spread struct {
	N      int     `json:"n"`
	Mean   float64 `json:"mean"`
	StdDev float64 `json:"stddev"`
	P50    float64 `json:"p50"`
	P90    float64 `json:"p90"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// SpreadOf summarises xs (which it sorts).
func SpreadOf(xs []float64) Spread {
	if len(xs) == 0 {
		return Spread{}
	}
	slices.Sort(xs)
	var sum float64
	for _, x := range xs {
		sum += x
	}
	mean := sum / float64(len(xs))
	var sq float64
	for _, x := range xs {
		sq += (x - mean) * (x - mean)
	}
	pct := func(p float64) float64 { return xs[max(int(math.Ceil(p*float64(len(xs))))-1, 0)] }
	return Spread{N: len(xs), Mean: mean, StdDev: math.Sqrt(sq / float64(len(xs))),
		P50: pct(0.5), P90: pct(0.9), Min: xs[0], Max: xs[len(xs)-1]}
}

// EdgePopulation is one stream's figures over every edge reporting it.
type EdgePopulation struct {
	Stream       string `json:"stream"`
	SSRC         uint32 `json:"ssrc"`
	Edges        int    `json:"edges"`
	FractionLost Spread `json:"fraction_lost"`
	RTTSeconds   Spread `json:"rtt_seconds"` // over the edges that know their RTT
	JitterMS     Spread `json:"jitter_ms"`
	DeliveryBps  Spread `json:"delivery_bytes_per_second"`
}

// EdgePopulations summarises edges per stream (by SSRC), sorted by name.
func EdgePopulations(edges []Edge) []EdgePopulation {
	type acc struct {
		name                 string
		loss, rtt, jit, rate []float64
	}
	by := map[uint32]*acc{}
	for _, e := range edges {
		for _, r := range e.Streams {
			a := by[r.SSRC]
			if a == nil {
				a = &acc{name: r.Stream}
				by[r.SSRC] = a
			}
			a.loss = append(a.loss, r.FractionLost)
			if r.RTTSeconds > 0 {
				a.rtt = append(a.rtt, r.RTTSeconds)
			}
			a.jit = append(a.jit, r.JitterMS)
			a.rate = append(a.rate, float64(r.DeliveryBps))
		}
	}
	out := make([]EdgePopulation, 0, len(by))
	for ssrc, a := range by {
		out = append(out, EdgePopulation{Stream: a.name, SSRC: ssrc, Edges: len(a.loss),
			FractionLost: SpreadOf(a.loss), RTTSeconds: SpreadOf(a.rtt), JitterMS: SpreadOf(a.jit), DeliveryBps: SpreadOf(a.rate)})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Stream != out[j].Stream {
			return out[i].Stream < out[j].Stream
		}
		return out[i].SSRC < out[j].SSRC
	})
	return out
}

// EdgeReporter is implemented by stages that hear edges' reports (the
// cloud's quic-retransmit); GET /api/edges and the per-edge metrics read
// them. Edges returns copies, by ID.
type EdgeReporter interface {
	Edges() []Edge
}
