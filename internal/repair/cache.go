package repair

import (
	"sync"
	"time"
)

// MaxCachePackets bounds a Ring: sequence numbers are unwrapped relative to
// the newest packet, which is unambiguous only within half the 16-bit space.
const MaxCachePackets = 1 << 15

// MinCachePackets is the smallest ring worth having.
const MinCachePackets = 16

// Ring keeps the last packets of one SSRC, indexed by sequence number: at
// most N of them, and, when it has a maximum age, only those that arrived
// within that age of the newest insert. Sequence numbers are unwrapped to a
// 64-bit counter, so a slot is found in O(1) by ext % len(slots) and the
// 16-bit wrap never aliases two packets.
//
// A ring without a maximum age preallocates N slots and their buffers. One
// with a maximum age starts small and doubles (up to N) only while packets
// younger than the age would be overwritten, and hands the buffers of
// expired packets to later inserts, keeping a few spare: its memory follows
// the stream's rate × age, not N. Either way, once the ring has reached its
// size, Insert does not allocate.
// A Ring is safe for one writer and many readers.
type Ring struct {
	mu      sync.Mutex
	slots   []slot
	highest int64 // extended seq of the newest packet; -1 when empty
	// oldest is the lowest extended seq that may hold a buffer: every slot
	// below it has been released. Only kept with a maximum age.
	oldest  int64
	limit   int       // most slots (N)
	maxAge  int64     // nanoseconds; 0 = bounded by count only
	base    time.Time // arrival times are kept as nanoseconds since this
	slotCap int
	free    [][]byte // buffers of expired packets, reused by Insert
	held    int      // slots holding a buffer
	bytes   int      // capacity of every buffer the ring owns (slots and free)
}

type slot struct {
	ext int64 // extended seq held; -1 when empty
	at  int64 // arrival, nanoseconds since Ring.base (maximum age only)
	buf []byte
}

// slotSize is what one slot costs besides its buffer.
const slotSize = 8 + 8 + 24

// NewRing returns a ring of n slots (clamped to MinCachePackets..MaxCachePackets),
// each with a buffer of slotCap bytes preallocated (0 to grow on demand).
func NewRing(n, slotCap int) *Ring { return NewTimedRing(n, slotCap, 0) }

// NewTimedRing returns a ring of at most n packets (clamped as NewRing's)
// that keeps only those that arrived within maxAge of the newest (0: no
// maximum age, as NewRing). Buffers are allocated with slotCap bytes (or
// the packet's size if larger) as they are needed.
func NewTimedRing(n, slotCap int, maxAge time.Duration) *Ring {
	n = min(max(n, MinCachePackets), MaxCachePackets)
	r := &Ring{highest: -1, oldest: -1, limit: n, maxAge: int64(max(maxAge, 0)), slotCap: slotCap}
	if r.maxAge > 0 {
		r.slots = make([]slot, MinCachePackets)
		r.free = make([][]byte, 0, minSpare)
		for i := range r.slots {
			r.slots[i].ext = -1
		}
		return r
	}
	r.slots = make([]slot, n)
	var arena []byte
	if slotCap > 0 {
		arena = make([]byte, n*slotCap)
		r.bytes = len(arena)
	}
	for i := range r.slots {
		r.slots[i].ext = -1
		if slotCap > 0 {
			r.slots[i].buf = arena[i*slotCap : i*slotCap : (i+1)*slotCap]
		}
	}
	return r
}

// minSpare is how many released buffers a timed ring keeps at least, so a
// burst of expiries (a keyframe's packets) feeds the next burst of inserts.
const minSpare = 64

// Len returns the ring's capacity in packets now (a timed ring grows up to
// Limit).
func (r *Ring) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.slots)
}

// Limit returns the most packets the ring holds.
func (r *Ring) Limit() int { return r.limit }

// Bytes returns the memory the ring holds: its slots and every buffer it
// owns.
func (r *Ring) Bytes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.slots)*slotSize + r.bytes + cap(r.free)*24
}

// Held returns how many packets the ring holds.
func (r *Ring) Held() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.maxAge == 0 {
		n := 0
		for i := range r.slots {
			if r.slots[i].ext >= 0 {
				n++
			}
		}
		return n
	}
	return r.held
}

// unwrap maps seq to the extended counter nearest to the newest packet.
// Callers hold mu.
func (r *Ring) unwrap(seq uint16) int64 {
	if r.highest < 0 {
		return int64(seq) + 1<<16 // leave room below the first packet
	}
	return r.highest + int64(int16(seq-uint16(r.highest)))
}

// Insert copies pkt into the slot of seq, arriving now.
func (r *Ring) Insert(seq uint16, pkt []byte) { r.InsertAt(seq, pkt, time.Now()) }

// InsertAt copies pkt into the slot of seq, arriving at now. A packet far
// behind the newest (older than the ring holds) is ignored; one far behind
// by more than the ring and still "behind" in serial order is taken as the
// sender restarting its numbering, and the ring starts over.
func (r *Ring) InsertAt(seq uint16, pkt []byte, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ext := r.unwrap(seq)
	n := int64(r.limit)
	switch {
	case ext > r.highest:
		r.highest = ext
	case ext <= r.highest-n:
		// Too old for the window. A sender that restarted its numbering
		// would be stuck here forever, so start over from this packet.
		r.clear()
		ext = int64(seq) + 1<<16
		r.highest = ext
	}
	if r.maxAge == 0 {
		s := &r.slots[ext%int64(len(r.slots))]
		s.ext = ext
		s.buf = append(s.buf[:0], pkt...)
		return
	}
	if r.base.IsZero() {
		r.base = now
	}
	// Sub uses the monotonic clock when both times carry it, so a step of
	// the wall clock neither empties the cache nor pins it.
	r.insertTimed(ext, pkt, int64(now.Sub(r.base)))
}

// clear empties the ring. Callers hold mu.
func (r *Ring) clear() {
	if r.maxAge > 0 {
		r.releaseAll()
	}
	for i := range r.slots {
		r.slots[i].ext = -1
	}
	r.oldest = -1
}

// insertTimed is InsertAt for a ring with a maximum age. Callers hold mu.
func (r *Ring) insertTimed(ext int64, pkt []byte, at int64) {
	// Every slot below oldest has been released. Release what fell out of
	// the window by count, then by age: oldest only moves up, so each
	// sequence number is visited once overall.
	if r.oldest < 0 || ext < r.oldest {
		r.oldest = ext
	}
	low := r.highest - int64(r.limit) + 1
	if low-r.oldest >= int64(len(r.slots)) {
		r.releaseAll() // the window jumped past every slot
		r.oldest = low
	}
	for ; r.oldest < low; r.oldest++ {
		if s := &r.slots[r.oldest%int64(len(r.slots))]; s.ext == r.oldest {
			r.release(s)
		}
	}
	for ; r.oldest < ext; r.oldest++ {
		s := &r.slots[r.oldest%int64(len(r.slots))]
		if s.ext == r.oldest {
			if at-s.at <= r.maxAge {
				break
			}
			r.release(s)
		}
	}
	s := &r.slots[ext%int64(len(r.slots))]
	for s.ext >= 0 && s.ext != ext && at-s.at <= r.maxAge && len(r.slots) < r.limit {
		// A packet still young enough sits in this slot: grow rather
		// than drop it before its time.
		r.grow()
		s = &r.slots[ext%int64(len(r.slots))]
	}
	if s.ext > ext {
		return // a newer packet holds the slot: the late one is not kept
	}
	if s.buf == nil {
		s.buf = r.take(len(pkt))
		r.held++
	}
	before := cap(s.buf)
	s.buf = append(s.buf[:0], pkt...)
	r.bytes += cap(s.buf) - before
	s.ext, s.at = ext, at
}

// releaseAll releases every slot. Callers hold mu.
func (r *Ring) releaseAll() {
	for i := range r.slots {
		r.release(&r.slots[i])
	}
}

// release empties s and keeps its buffer for reuse, up to an eighth of the
// packets held (at least minSpare); beyond that the buffer is left to the
// GC, so a stream whose rate falls gives its memory back.
func (r *Ring) release(s *slot) {
	if s.buf != nil {
		if len(r.free) < max(minSpare, r.held/8) {
			r.free = append(r.free, s.buf[:0])
		} else {
			r.bytes -= cap(s.buf)
		}
		s.buf = nil
		r.held--
	}
	s.ext = -1
}

// take returns a buffer for a packet of n bytes: a spare one, or a new one.
func (r *Ring) take(n int) []byte {
	if k := len(r.free); k > 0 {
		b := r.free[k-1]
		r.free[k-1] = nil
		r.free = r.free[:k-1]
		return b
	}
	b := make([]byte, 0, max(r.slotCap, n))
	r.bytes += cap(b)
	return b
}

// grow doubles the slots (up to limit), moving every held packet to its
// slot in the larger ring. Callers hold mu.
func (r *Ring) grow() {
	old := r.slots
	r.slots = make([]slot, min(2*len(old), r.limit))
	for i := range r.slots {
		r.slots[i].ext = -1
	}
	for _, s := range old {
		if s.ext >= 0 {
			r.slots[s.ext%int64(len(r.slots))] = s
		}
	}
}

// find returns the slot holding seq, or nil. Callers hold mu.
func (r *Ring) find(seq uint16) *slot {
	if r.highest < 0 {
		return nil
	}
	ext := r.unwrap(seq)
	if ext > r.highest || ext <= r.highest-int64(r.limit) {
		return nil
	}
	if s := &r.slots[ext%int64(len(r.slots))]; s.ext == ext {
		return s
	}
	return nil
}

// AppendPacket appends the cached packet seq to dst and reports whether it
// was there. The bytes are copied under the lock, so dst never aliases the
// ring.
func (r *Ring) AppendPacket(dst []byte, seq uint16) ([]byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.find(seq); s != nil {
		return append(dst, s.buf...), true
	}
	return dst, false
}

// Has reports whether seq is cached.
func (r *Ring) Has(seq uint16) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.find(seq) != nil
}

// Newest returns the newest cached sequence number and whether there is one.
func (r *Ring) Newest() (uint16, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return uint16(r.highest), r.highest >= 0
}
