package bench

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// histogram counts durations in log-linear buckets (microseconds, 32 linear
// steps per power of two: under 3 % error), so millions of samples cost a
// fixed few KB. Safe for one writer and concurrent readers.
type histogram struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Int64
	hi     atomic.Int32 // highest bucket used + 1: merge and snap scan no further
}

const (
	histSub     = 5 // 2^5 linear steps per octave
	histOctaves = 40
	histBuckets = (histOctaves + 1) << histSub
)

func histIndex(us uint64) int {
	if us < 1<<histSub {
		return int(us)
	}
	exp := bits.Len64(us) - 1 - histSub // octave above the linear range
	i := (exp+1)<<histSub + int(us>>uint(exp)) - 1<<histSub
	if i >= histBuckets {
		return histBuckets - 1
	}
	return i
}

// histLow is the smallest value (µs) of bucket i.
func histLow(i int) uint64 {
	if i < 1<<histSub {
		return uint64(i)
	}
	exp := i>>histSub - 1
	return uint64(i&(1<<histSub-1)+1<<histSub) << uint(exp)
}

func (h *histogram) add(d time.Duration) {
	if d < 0 {
		d = 0
	}
	i := histIndex(uint64(d / time.Microsecond))
	h.counts[i].Add(1)
	if int32(i) >= h.hi.Load() {
		h.hi.Store(int32(i) + 1) // one writer: no race between Load and Store
	}
	h.n.Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			break
		}
	}
}

// merge adds o's counts into h.
func (h *histogram) merge(o *histogram) {
	hi := o.hi.Load()
	for i := range hi {
		if c := o.counts[i].Load(); c > 0 {
			h.counts[i].Add(c)
		}
	}
	for {
		cur := h.hi.Load()
		if hi <= cur || h.hi.CompareAndSwap(cur, hi) {
			break
		}
	}
	h.n.Add(o.n.Load())
	if m := o.max.Load(); m > h.max.Load() {
		h.max.Store(m)
	}
}

// quantile returns the q-quantile (0..1), as the middle of its bucket.
func (h *histogram) quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n-1)) + 1
	var seen uint64
	for i := range int(h.hi.Load()) {
		seen += h.counts[i].Load()
		if seen >= rank {
			lo, hi := histLow(i), histLow(i+1)
			d := time.Duration((lo+hi)/2) * time.Microsecond
			if m := time.Duration(h.max.Load()); d > m {
				d = m
			}
			return d
		}
	}
	return time.Duration(h.max.Load())
}
