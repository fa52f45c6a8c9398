package httpflvsink

import (
	"time"

	"github.com/mediapipe/mediapipe/core/media/flv"
)

// When a stream's next burst is due, from the pace of its tags, and
// whether its queued bursts wait for it (flushDue, from coalesceViewers
// viewers on). All of it is Run's own.

// burstSplit: tags closer than this came in one burst (out of one read of
// the relay's input, microseconds apart) and say nothing of the pace.
const burstSplit = time.Millisecond

// maxPaceGap: a longer gap is a pause (the publisher stalled or
// reconnected), not the pace, which it would inflate for dozens of frames.
const maxPaceGap = time.Second

// tagPace notes that a tag of type typ came at now: a live stream's audio
// frames come a frame's duration apart, and so do its video frames.
func (st *stream) tagPace(typ byte, now time.Time) {
	k := 0
	switch typ {
	case flv.TypeAudio:
	case flv.TypeVideo:
		k = 1
	default:
		return
	}
	if last := st.lastAt[k]; !last.IsZero() {
		if gap := now.Sub(last); gap > burstSplit && gap <= maxPaceGap {
			if st.pace[k] == 0 {
				st.pace[k] = gap
			} else {
				st.pace[k] += (gap - st.pace[k]) / 4 // smoothed: one late frame moves it a little
			}
		}
	}
	st.lastAt[k] = now
}

// nextBurst is when the stream's next tag is expected, after now; zero
// when nothing is (no pace known yet, or every kind of tag is overdue:
// a stream that paused, or stopped sending one of them).
func (st *stream) nextBurst(now time.Time) (next time.Time) {
	for k, last := range st.lastAt {
		if st.pace[k] <= 0 {
			continue
		}
		if at := last.Add(st.pace[k]); at.After(now) && (next.IsZero() || at.Before(next)) {
			next = at
		}
	}
	return next
}

// pairMargin: the next burst is waited for only when it is expected this
// much before the deadline, so a little jitter in its coming does not cost
// a wait of the whole flush_interval for nothing.
const pairMargin = time.Millisecond

// pairSlack: a lone burst is held for the next one even when that is
// expected up to this much past the deadline. Publishers pace their
// frames on a coarse clock (ffmpeg -re sends on ~10 ms ticks), so a frame
// comes up to a tick after the time its pace says; if it misses the
// deadline, the lone burst goes out at the deadline, a wait no longer
// than flush_interval. A stream whose frames come further apart than
// that (video alone, 25 fps) is written at every frame.
const pairSlack = 10 * time.Millisecond

// holdFor says whether the stream's queued bursts, the last of whose tags
// came at last, wait for its next one, given their deadline: when that is
// expected before the deadline, or, for a lone burst (the first since the
// last write), a little after.
func (st *stream) holdFor(now, last, deadline time.Time) bool {
	next := st.nextBurst(now)
	switch {
	case next.IsZero():
		return false
	case !next.Add(pairMargin).After(deadline):
		return true
	}
	lone := last.Sub(st.dirtySince) <= burstSplit
	return lone && !next.After(deadline.Add(pairSlack))
}

// latestTag is when the stream's last audio or video tag came.
func (st *stream) latestTag() time.Time {
	if st.lastAt[0].After(st.lastAt[1]) {
		return st.lastAt[0]
	}
	return st.lastAt[1]
}
