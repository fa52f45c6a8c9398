package httpflvsink

import (
	"testing"
	"time"
)

func TestSendBufferFor(t *testing.T) {
	for _, c := range []struct {
		rate int64
		want int
	}{
		{0, minSendBuffer},           // rate not known yet
		{8_000, minSendBuffer},       // 64 kbit/s audio
		{100_000, 100_000},           // 0.8 Mbit/s: a second of it
		{100_000_000, maxSendBuffer}, // anything above 8 Mbit/s
	} {
		if got := sendBufferFor(c.rate); got != c.want {
			t.Errorf("sendBufferFor(%d) = %d, want %d", c.rate, got, c.want)
		}
	}
}

// TestMeasureRate: a rate is known after a second of the stream, follows a
// rise at once and a fall by a quarter a second.
func TestMeasureRate(t *testing.T) {
	var st stream
	t0 := time.Unix(1_700_000_000, 0)
	feed := func(at time.Duration, bytes int64) int64 {
		st.inBytes += bytes
		st.measureRate(t0.Add(at))
		return st.rate.Load()
	}
	steps := []struct {
		at    time.Duration
		bytes int64
		want  int64
	}{
		{0, 5_000, 0},                       // the first look starts the window
		{500 * time.Millisecond, 50_000, 0}, // not a second yet
		{time.Second, 50_000, 100_000},
		{2 * time.Second, 200_000, 200_000}, // a rise holds at once
		{3 * time.Second, 20_000, 150_000},  // a fall fades by a quarter
		{5 * time.Second, 200_000, 112_500}, // over two seconds: 100 kB/s < 150 kB/s × 3/4
	}
	for _, s := range steps {
		if got := feed(s.at, s.bytes); got != s.want {
			t.Fatalf("at %v: rate %d, want %d", s.at, got, s.want)
		}
	}
}
