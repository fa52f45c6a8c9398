package policy

import (
	"math"

	"github.com/mediapipe/mediapipe/core/control"
)

// MaxParity is the most parity packets fec-encoder sends per group.
const MaxParity = 32

// BinomialTail is P(X ≥ m) for X ~ Binomial(n, p).
func BinomialTail(n, m int, p float64) float64 {
	switch {
	case m <= 0:
		return 1
	case m > n || p <= 0:
		return 0
	case p >= 1:
		return 1
	}
	// 1 − P(X < m), the terms built up by ratio, which stays exact enough
	// for the n ≤ 96 of a group.
	term := math.Pow(1-p, float64(n)) // P(X = 0)
	below := 0.0
	for i := 0; i < m; i++ {
		below += term
		term *= float64(n-i) / float64(i+1) * p / (1 - p)
	}
	return max(0, 1-below)
}

// Residual is the fraction of a stream's source packets still lost after
// Reed-Solomon RS(k, k+m) at independent loss p: a lost source packet is
// recovered unless at least m of the group's other k+m−1 packets are lost
// too. m = 0 leaves p.
func Residual(p float64, k, m int) float64 {
	if m <= 0 {
		return p
	}
	return p * BinomialTail(k+m-1, m, p)
}

// GroupSize is the number of source packets a stream's groups hold: the
// mean measured over the last interval, or, before any group was sent,
// what arrives within max_wait at the stream's packet rate — capped at
// Group either way, and at least 1.
func GroupSize(s *control.Stream) int {
	g := max(s.Group, 1)
	k := s.MeanGroup
	if k <= 0 {
		k = s.PacketsPerSecond * s.MaxWaitSeconds
		if s.PacketsPerSecond <= 0 || s.MaxWaitSeconds <= 0 {
			k = float64(g)
		}
	}
	return min(g, max(1, int(math.Round(k))))
}

// Overhead is the overhead that gives m parity packets to a group of k.
func Overhead(m, k int) float64 {
	if m <= 0 || k <= 0 {
		return 0
	}
	return min(1, float64(m)/float64(k))
}

// ParityOf is the parity count fec-encoder sends for a group of k at
// overhead o (its own rounding).
func ParityOf(o float64, k int) int {
	if o <= 0 {
		return 0
	}
	return min(MaxParity, max(1, int(math.Ceil(o*float64(k)-1e-9))))
}

// maxParity is the most parity a group of k may get: overhead ≤ 1.
func maxParity(k int) int { return min(MaxParity, max(k, 1)) }

// Percentile is the p-quantile (0 … 1) of xs (nearest rank; xs is sorted
// in place); 0 for none.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sortFloats(xs)
	i := int(math.Ceil(p*float64(len(xs)))) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}

// ParityBytesRatio is a parity packet's bytes per source packet's: parity
// is as long as its group's longest packet plus headers, so a group mixing
// audio and video pays up to twice what counting packets says. 1 when
// either size is not known.
func ParityBytesRatio(s *control.Stream) float64 {
	if s.MeanParityBytes <= 0 || s.MeanPacketBytes <= 0 {
		return 1
	}
	return max(1, s.MeanParityBytes/s.MeanPacketBytes)
}
