package bench

import (
	"math"
	"testing"
)

// TestTrendOf: a series that keeps climbing through the second half fails;
// one that climbs at start-up and then levels off, one that wanders, one
// that saws up and down with the GC, and one that falls do not; a tiny
// steady rise under the floor does not either.
func TestTrendOf(t *testing.T) {
	const n = 120 // a sample every 5 s for 10 minutes
	ts := make([]float64, n)
	for i := range ts {
		ts[i] = float64(i) * 5
	}
	gen := func(f func(i int) float64) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = f(i)
		}
		return v
	}
	rss := figure{name: "rss", floor: 32}
	cases := []struct {
		name  string
		fig   figure
		v     []float64
		grows bool
	}{
		{"linear leak", rss, gen(func(i int) float64 { return 100 + float64(i) }), true},
		{"leak starting late", rss, gen(func(i int) float64 { return 200 + max(0, float64(i-60)*2) }), true},
		{"warm-up then flat", rss, gen(func(i int) float64 { return 300 - 200*math.Exp(-float64(i)/8) }), false},
		{"flat with noise", rss, gen(func(i int) float64 { return 150 + float64((i*37)%11) - 5 }), false},
		{"gc sawtooth", rss, gen(func(i int) float64 { return 150 + float64(i%10)*4 }), false},
		{"shrinking", rss, gen(func(i int) float64 { return 400 - float64(i) }), false},
		{"small rise under the floor", figure{name: "open_fds", floor: 40}, gen(func(i int) float64 { return 30 + float64(i)/10 }), false},
		{"goroutine leak", figure{name: "goroutines", floor: 100}, gen(func(i int) float64 { return 500 + float64(i)*5 }), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr := trendOf(c.fig, ts, c.v)
			if tr.Grows != c.grows {
				t.Errorf("grows = %v, want %v (rise %.1f, limit %.1f, mean %.1f)", tr.Grows, c.grows, tr.Rise, tr.Limit, tr.Mean)
			}
			if tr.Start != c.v[0] || tr.End != c.v[n-1] {
				t.Errorf("start/end %v/%v, want %v/%v", tr.Start, tr.End, c.v[0], c.v[n-1])
			}
		})
	}
}

// TestTrendOfShort: too few samples in the second half to fit a line is
// no verdict of growth, and nothing panics on an empty series.
func TestTrendOfShort(t *testing.T) {
	if tr := trendOf(soakFigures[0], []float64{0, 1, 2, 3}, []float64{1, 100, 1000, 10000}); tr.Grows {
		t.Errorf("4 samples: grows, want no verdict")
	}
	if tr := trendOf(soakFigures[0], nil, nil); tr.Grows || tr.Peak != 0 {
		t.Errorf("empty: %+v", tr)
	}
}

func TestFitLine(t *testing.T) {
	slope, mean := fitLine([]float64{0, 1, 2, 3}, []float64{1, 3, 5, 7})
	if slope != 2 || mean != 4 {
		t.Errorf("slope %v mean %v, want 2 and 4", slope, mean)
	}
}
