package repair

import "time"

// bucket is a token bucket of bytes: rate per second, holding at most burst.
// Not safe for concurrent use; the server guards it per peer.
type bucket struct {
	rate, burst float64
	tokens      float64
	last        time.Time
}

func newBucket(rate int, now time.Time) *bucket {
	burst := max(float64(rate)/4, 64<<10)
	return &bucket{rate: float64(rate), burst: burst, tokens: burst, last: now}
}

// take removes n tokens if there are that many, after refilling for the time
// since the last call.
func (b *bucket) take(n int, now time.Time) bool {
	if dt := now.Sub(b.last); dt > 0 {
		b.tokens = min(b.burst, b.tokens+dt.Seconds()*b.rate)
		b.last = now
	}
	if b.tokens < float64(n) {
		return false
	}
	b.tokens -= float64(n)
	return true
}
