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

// countingConn is a RawConn without a socket that counts the reads of its
// send queue; the probe's n stands for what the queue holds.
type countingConn struct{ reads int }

func (c *countingConn) Control(func(fd uintptr)) error    { c.reads++; return nil }
func (c *countingConn) Read(func(fd uintptr) bool) error  { return nil }
func (c *countingConn) Write(func(fd uintptr) bool) error { return nil }

// TestCheckLagReadsQueueOnlyWhenItMatters: a viewer's send queue is read
// only when a full send buffer could put it past write_timeout of the
// stream, and what is read then counts toward the limit.
func TestCheckLagReadsQueueOnlyWhenItMatters(t *testing.T) {
	const rate = 100_000 // bytes a second
	t0 := time.Unix(1_700_000_000, 0)
	for _, c := range []struct {
		name         string
		writeTimeout time.Duration
		sndbufSet    bool
		queuedHere   int64 // tag bytes queued but not written
		kernel       int   // what the probe says the socket holds
		wantReads    int
		wantBehind   bool
	}{
		// 10 s of the stream is 1 MB; a full 100 kB send buffer is 264 kB.
		{"far within", 10 * time.Second, true, 100_000, 0, 0, false},
		{"near the limit", 10 * time.Second, true, 900_000, 0, 1, false},
		{"past it with the kernel's", 10 * time.Second, true, 900_000, 200_000, 1, true},
		// The send buffer was not taken: the kernel's share is unknown.
		{"buffer unknown", 10 * time.Second, false, 0, 0, 1, false},
		// 2 s of the stream is 200 kB, less than a full send buffer.
		{"short write_timeout", 2 * time.Second, true, 0, 250_000, 1, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := &Stage{cfg: Config{WriteTimeout: c.writeTimeout}, checkEvery: time.Second}
			st := &stream{}
			st.rate.Store(rate)
			rc := &countingConn{}
			v := &viewer{st: st, sndbuf: sendBufferFor(rate), sndbufSet: c.sndbufSet}
			v.probe = sockProbe{rc: rc, n: c.kernel, fn: func(uintptr) {}}
			err := s.checkLag(v, t0, c.queuedHere)
			if rc.reads != c.wantReads {
				t.Errorf("send queue read %d times, want %d", rc.reads, c.wantReads)
			}
			if got := err != nil; got != c.wantBehind {
				t.Errorf("checkLag = %v, want behind %v", err, c.wantBehind)
			}
		})
	}
}
