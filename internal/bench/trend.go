package bench

import (
	"fmt"
	"math"
)

// A figure the soak samples, and how much it may drift before the soak
// calls it a leak.
type figure struct {
	name  string
	unit  string
	floor float64 // growth below this is noise, whatever the mean
}

// soakFigures are what the soak samples, in sample order. The floors are
// what a healthy relay's figures wander by over a run (GC cycles, a few
// streams more or less at the moment of sampling).
var soakFigures = []figure{
	{name: "rss", unit: "MB", floor: 32},
	{name: "goroutines", unit: "", floor: 100},
	{name: "open_fds", unit: "", floor: 40},
	{name: "kernel_tcp_mem", unit: "KB", floor: 16 << 10}, // the whole host's, not this process's
}

// growthLimit is the share of a figure's mean that it may grow by over the
// second half of the run (the fitted line's rise) before it counts as
// growing without bound.
const growthLimit = 0.10

// Trend is one sampled figure over the run.
type Trend struct {
	Name  string  `json:"name"`
	Unit  string  `json:"unit,omitempty"`
	Start float64 `json:"start"`
	Peak  float64 `json:"peak"`
	End   float64 `json:"end"`
	// Rise is the least-squares line's slope over the second half of the
	// run times that half's length: how much the figure grew across it.
	Rise  float64 `json:"rise_second_half"`
	Mean  float64 `json:"mean_second_half"`
	Limit float64 `json:"limit"` // max(growthLimit × Mean, floor)
	Grows bool    `json:"grows"` // Rise > Limit
}

// trendOf states series v, sampled at times t (seconds since start), with
// the verdict: it grows without bound when the line fitted to the second
// half of the run rises across that half by more than growthLimit of the
// half's mean and by more than floor.
func trendOf(f figure, t, v []float64) Trend {
	tr := Trend{Name: f.name, Unit: f.unit}
	if len(v) == 0 || len(t) != len(v) {
		return tr
	}
	tr.Start, tr.End, tr.Peak = v[0], v[len(v)-1], v[0]
	for _, x := range v {
		tr.Peak = max(tr.Peak, x)
	}
	half := len(v) / 2
	ht, hv := t[half:], v[half:]
	slope, mean := fitLine(ht, hv)
	tr.Mean = mean
	tr.Rise = slope * (ht[len(ht)-1] - ht[0])
	tr.Limit = max(growthLimit*math.Abs(mean), f.floor)
	tr.Grows = len(hv) >= 3 && tr.Rise > tr.Limit
	return tr
}

// fitLine is the least-squares slope of v over t, and v's mean.
func fitLine(t, v []float64) (slope, mean float64) {
	n := float64(len(v))
	if n == 0 {
		return 0, 0
	}
	var st, sv float64
	for i := range v {
		st += t[i]
		sv += v[i]
	}
	mt, mv := st/n, sv/n
	var num, den float64
	for i := range v {
		num += (t[i] - mt) * (v[i] - mv)
		den += (t[i] - mt) * (t[i] - mt)
	}
	if den == 0 {
		return 0, mv
	}
	return num / den, mv
}

func (tr Trend) verdict() string {
	if tr.Grows {
		return fmt.Sprintf("GROWS (+%.1f > %.1f)", tr.Rise, tr.Limit)
	}
	return "flat"
}
