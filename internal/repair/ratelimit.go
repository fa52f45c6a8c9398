package repair

import "time"

// bucket is a token bucket of bytes: rate per second, holding at most burst.
// Not safe for concurrent use; the server guards it per peer. The zero
// bucket is untuned: tune gives it its rate.
type bucket struct {
	rate, burst float64
	tokens      float64
	last        time.Time
}

// burstOf is the bytes a bucket of rate holds: a quarter second, at least
// 64 KiB so one burst of NACKs for a keyframe's packets is served whole.
func burstOf(rate float64) float64 { return max(rate/4, 64<<10) }

// tune sets the bucket's rate, if it changed. An untuned bucket starts
// full; a tuned one keeps what it has earned at the old rate, clipped to
// the new burst, so lowering the rate takes effect at once and raising it
// grants no windfall.
func (b *bucket) tune(rate int, now time.Time) {
	r := float64(rate)
	if b.rate == r {
		return
	}
	if b.rate == 0 {
		*b = bucket{rate: r, burst: burstOf(r), tokens: burstOf(r), last: now}
		return
	}
	b.refill(now)
	b.rate, b.burst = r, burstOf(r)
	b.tokens = min(b.tokens, b.burst)
}

func (b *bucket) refill(now time.Time) {
	if dt := now.Sub(b.last); dt > 0 {
		b.tokens = min(b.burst, b.tokens+dt.Seconds()*b.rate)
		b.last = now
	}
}

// take removes n tokens if there are that many, after refilling for the time
// since the last call.
func (b *bucket) take(n int, now time.Time) bool {
	b.refill(now)
	if b.tokens < float64(n) {
		return false
	}
	b.tokens -= float64(n)
	return true
}
