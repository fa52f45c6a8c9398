package core

import "testing"

func TestSpreadOf(t *testing.T) {
	s := SpreadOf([]float64{0.04, 0.06, 0.05, 0.05})
	if s.N != 4 || s.Mean < 0.0499 || s.Mean > 0.0501 || s.StdDev < 0.007 || s.StdDev > 0.0072 || s.P50 != 0.05 || s.P90 != 0.06 || s.Min != 0.04 || s.Max != 0.06 {
		t.Fatalf("%+v", s)
	}
	if (SpreadOf(nil) != Spread{}) {
		t.Fatal("empty spread not zero")
	}
}

func TestEdgePopulations(t *testing.T) {
	edges := []Edge{
		{ID: 0, Streams: []EdgeStream{{Stream: "live/a", SSRC: 1, FractionLost: 0.02, RTTSeconds: 0.01, DeliveryBps: 100}, {Stream: "live/b", SSRC: 2, FractionLost: 0.5}}},
		{ID: 1, Streams: []EdgeStream{{Stream: "live/a", SSRC: 1, FractionLost: 0.06, DeliveryBps: 300}}},
	}
	p := EdgePopulations(edges)
	if len(p) != 2 || p[0].Stream != "live/a" || p[0].Edges != 2 || p[1].Edges != 1 {
		t.Fatalf("%+v", p)
	}
	a := p[0]
	if a.FractionLost.Mean < 0.0399 || a.FractionLost.Mean > 0.0401 || a.FractionLost.StdDev < 0.0199 || a.FractionLost.StdDev > 0.0201 {
		t.Fatalf("loss %+v", a.FractionLost)
	}
	if a.RTTSeconds.N != 1 || a.DeliveryBps.Mean != 200 {
		t.Fatalf("rtt %+v rate %+v", a.RTTSeconds, a.DeliveryBps)
	}
}
