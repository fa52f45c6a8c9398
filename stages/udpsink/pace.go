package udpsink

import (
	"math"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/control"
)

// Pacing spreads a burst of one stream's packets (a keyframe's fragments)
// at the stream's pace, so a receiver's socket buffer or a switch port does
// not drop the tail of every keyframe. Each paced stream has a token bucket
// of bytes: a packet goes into the batch at once while the bucket allows
// it, else it waits in the stream's queue; one timer in Run's goroutine
// releases the queues, a burst allowance at a time, so a wake-up sends
// several packets (batched) rather than one. A stream's queue is capped:
// past it, the oldest packets go at once (counted as pace_overrun) rather
// than being dropped or delaying the stream further.
//
// The pace in effect is never below paceFloor nor below the stream's own
// rate over the last announce interval: a slower pace cannot carry the
// stream at all, so every packet would wait out the cap and go as an
// overrun, late, and a tiny pace would make the timer's wait overflow.

// The bucket holds paceBurstTime's worth of bytes at the pace, and at least
// paceBurstMin (a few packets); a stream holds back at most paceMaxDelay's
// worth at the pace, within [paceCapMin, paceCapMax].
const (
	paceBurstTime = time.Millisecond
	paceBurstMin  = 4 * 1500
	paceMaxDelay  = 100 * time.Millisecond
	paceCapMin    = 64 << 10
	paceCapMax    = 1 << 20
	// paceMinWait: a timer shorter than this costs a wake-up for nothing.
	paceMinWait = 50 * time.Microsecond
	// paceMaxWait bounds one timer wait (a full burst at the floor takes
	// under 0.1 s), whatever the arithmetic says.
	paceMaxWait = time.Second
	// paceFloor is the lowest pace applied, bytes/s (512 kbit/s).
	paceFloor = 64_000
	// paceMeasureMin is the shortest interval a stream's rate is measured
	// over.
	paceMeasureMin = 500 * time.Millisecond
)

// The controller paces streams through it.
var _ control.Pacer = (*Stage)(nil)

// pacer is one stream's pacing state; only Run's goroutine touches it.
type pacer struct {
	want   float64 // bytes/s asked for (controller or pace param); 0: not paced
	rate   float64 // bytes/s in effect: want, raised to the floors; 0: not paced
	set    bool    // the controller set want (else the pace param applies)
	burst  float64 // the bucket's size, from rate
	cap    int     // most bytes held, from rate
	tokens float64
	last   time.Time // when tokens was last refilled; zero: the bucket starts full
	q      []*core.Packet
	head   int // q[head:] is held, oldest first
	held   int // bytes in q[head:]
	listed bool
	// in is the bytes passed since the last announce tick, measured the
	// stream's bytes/s over the interval before (the pace's floor).
	in       int
	measured float64
}

// setRate makes want the pace asked for from the next packet on.
func (pc *pacer) setRate(want float64) {
	if math.IsNaN(want) || want < 0 || math.IsInf(want, 0) {
		want = 0
	}
	pc.want = want
	pc.apply()
}

// apply puts the pace in effect: want, but no less than the floors; the
// bucket keeps what it has earned, clipped to the new burst.
func (pc *pacer) apply() {
	rate := 0.0
	if pc.want > 0 {
		rate = max(pc.want, paceFloor, pc.measured)
	}
	pc.rate = rate
	pc.burst = max(rate*paceBurstTime.Seconds(), paceBurstMin)
	pc.cap = int(min(max(rate*paceMaxDelay.Seconds(), paceCapMin), paceCapMax))
	pc.tokens = min(pc.tokens, pc.burst)
}

func (pc *pacer) refill(now time.Time) {
	if pc.last.IsZero() {
		pc.tokens, pc.last = pc.burst, now
		return
	}
	if dt := now.Sub(pc.last); dt > 0 {
		pc.tokens = min(pc.burst, pc.tokens+dt.Seconds()*pc.rate)
		pc.last = now
	}
}

// may reports whether a packet of n bytes may go now: a packet larger than
// the burst goes once the bucket is full, leaving it in debt.
func (pc *pacer) may(n int) bool { return pc.tokens >= min(float64(n), pc.burst) }

func (pc *pacer) push(p *core.Packet) {
	if len(pc.q) == cap(pc.q) && pc.head > 0 {
		// Full at the back with room at the front: move the held ones
		// down rather than let append grow (and copy) the slice forever.
		n := copy(pc.q, pc.q[pc.head:])
		clear(pc.q[n:])
		pc.q, pc.head = pc.q[:n], 0
	}
	pc.q = append(pc.q, p)
	pc.held += len(p.Data)
}

func (pc *pacer) pop() *core.Packet {
	p := pc.q[pc.head]
	pc.q[pc.head] = nil
	pc.head++
	pc.held -= len(p.Data)
	if pc.head == len(pc.q) {
		pc.q, pc.head = pc.q[:0], 0
	}
	return p
}

func (pc *pacer) empty() bool { return pc.head == len(pc.q) }

// SetPace sets stream's pace in bytes/s from its next packet on (0: not
// paced, whatever the pace param says). Safe from any goroutine; a stream
// the stage does not have (not seen yet, or ended) is ignored.
func (s *Stage) SetPace(stream *core.Stream, bytesPerSecond float64) {
	if stream == nil {
		return
	}
	s.paceMu.Lock()
	s.paceNew[stream] = bytesPerSecond
	s.paceMu.Unlock()
	s.paceDirty.Store(true)
}

// applyPace takes up the paces set since the last call and a changed pace
// param. A stream no longer paced sends what it held at once.
func (s *Stage) applyPace() {
	s.paceDirty.Store(false)
	s.wall = time.Now() // rare; the packets after it may be paced now
	static := float64(s.staticPace.Load())
	s.paceMu.Lock()
	for st, r := range s.paceNew {
		if ss := s.streams[st]; ss != nil {
			ss.pc.set = true
			ss.pc.setRate(r)
		}
	}
	clear(s.paceNew)
	s.paceMu.Unlock()
	s.static = static
	s.paced = 0
	for _, ss := range s.streams {
		if !ss.pc.set && ss.pc.want != static {
			ss.pc.setRate(static)
		}
		if ss.pc.rate > 0 {
			s.paced++
		} else if !ss.pc.empty() {
			s.drain(ss)
		}
	}
}

// newState is a new stream's state, paced by the pace param.
func (s *Stage) newState() *streamState {
	ss := &streamState{}
	if s.static > 0 {
		ss.pc.setRate(s.static)
		s.paced++
	}
	return ss
}

// forget drops a stream's pacing: it sends what the stream held.
func (s *Stage) forget(ss *streamState) {
	s.drain(ss)
	if ss.pc.rate > 0 {
		s.paced--
	}
}

// measurePace takes each stream's rate over the interval since the last
// call (an announce tick) as the floor of its pace. An interval under
// paceMeasureMin (ticks from a test's fake clock) is left to grow: a burst
// over a few milliseconds is not the stream's rate.
func (s *Stage) measurePace() {
	if s.measuredAt.IsZero() {
		s.measuredAt = s.wall
		return
	}
	dt := s.wall.Sub(s.measuredAt).Seconds()
	if dt < paceMeasureMin.Seconds() {
		return
	}
	s.measuredAt = s.wall
	for _, ss := range s.streams {
		pc := &ss.pc
		pc.measured, pc.in = float64(pc.in)/dt, 0
		if pc.want > 0 {
			pc.apply()
		}
	}
}

// pass sends p now or holds it by its stream's pace.
func (s *Stage) pass(ss *streamState, p *core.Packet) {
	if ss == nil {
		s.add(p.Data, p)
		return
	}
	ss.pc.in += len(p.Data)
	if ss.pc.rate == 0 {
		s.add(p.Data, p)
		return
	}
	pc := &ss.pc
	pc.refill(s.wall)
	n := len(p.Data)
	if pc.empty() && pc.may(n) {
		pc.tokens -= float64(n)
		s.add(p.Data, p)
		return
	}
	for !pc.empty() && pc.held+n > pc.cap {
		// Held too much: the oldest go now, in order, rather than wait
		// longer or be dropped.
		q := pc.pop()
		s.paceOverrun.Inc()
		s.add(q.Data, q)
	}
	if n > pc.cap {
		s.paceOverrun.Inc()
		s.add(p.Data, p)
		return
	}
	pc.push(p)
	s.paceHeld.Inc()
	if !pc.listed {
		pc.listed = true
		s.holding = append(s.holding, ss)
	}
}

// release sends what each holding stream's bucket allows by now.
func (s *Stage) release() {
	for i := 0; i < len(s.holding); {
		ss := s.holding[i]
		pc := &ss.pc
		pc.refill(s.wall)
		for !pc.empty() && pc.may(len(pc.q[pc.head].Data)) {
			p := pc.pop()
			pc.tokens -= float64(len(p.Data))
			s.add(p.Data, p)
		}
		if pc.empty() {
			s.unlist(i)
			continue
		}
		i++
	}
}

// drain sends everything ss holds, now.
func (s *Stage) drain(ss *streamState) {
	pc := &ss.pc
	for !pc.empty() {
		p := pc.pop()
		s.add(p.Data, p)
	}
	if i := indexOf(s.holding, ss); i >= 0 {
		s.unlist(i)
	}
}

func indexOf(l []*streamState, ss *streamState) int {
	for i, x := range l {
		if x == ss {
			return i
		}
	}
	return -1
}

// unlist takes holding[i] off the list of streams holding packets.
func (s *Stage) unlist(i int) {
	s.holding[i].pc.listed = false
	last := len(s.holding) - 1
	s.holding[i] = s.holding[last]
	s.holding[last] = nil
	s.holding = s.holding[:last]
}

// rearm sets the pace timer to when the first holding stream will have
// earned a full burst (or all it holds, if less): a wake-up then sends a
// burst's worth, not one packet.
func (s *Stage) rearm(t *time.Timer) {
	if len(s.holding) == 0 {
		if s.paceArmed {
			t.Stop()
			s.paceArmed = false
		}
		return
	}
	var wait time.Duration = -1
	for _, ss := range s.holding {
		if d := ss.pc.wait(s.wall); wait < 0 || d < wait {
			wait = d
		}
	}
	t.Reset(wait)
	s.paceArmed = true
}

// wait is how long from now until pc will have earned a full burst (or all
// it holds, if less), within [paceMinWait, paceMaxWait].
func (pc *pacer) wait(now time.Time) time.Duration {
	need := min(pc.burst, float64(pc.held)) - pc.tokens
	after := paceMaxWait // also when the division is not a number
	if secs := max(need, 0) / pc.rate; secs < paceMaxWait.Seconds() {
		// Converted only when it fits: a float too large for a Duration
		// converts to a negative one.
		after = time.Duration(secs * float64(time.Second))
	}
	return min(max(pc.last.Add(after).Sub(now), paceMinWait), paceMaxWait)
}
