package repair

import "sync"

// MaxCachePackets bounds a Ring: sequence numbers are unwrapped relative to
// the newest packet, which is unambiguous only within half the 16-bit space.
const MaxCachePackets = 1 << 15

// MinCachePackets is the smallest ring worth having.
const MinCachePackets = 16

// Ring keeps the last N packets of one SSRC, indexed by sequence number.
// Sequence numbers are unwrapped to a 64-bit counter, so a slot is found in
// O(1) by ext % N for any N and the 16-bit wrap never aliases two packets.
// Slots and their byte buffers are allocated once and reused: once every slot
// has held a packet as large as the next one, Insert does not allocate.
// A Ring is safe for one writer and many readers.
type Ring struct {
	mu      sync.Mutex
	slots   []slot
	highest int64 // extended seq of the newest packet; -1 when empty
}

type slot struct {
	ext int64 // extended seq held; -1 when empty
	buf []byte
}

// NewRing returns a ring of n slots (clamped to MinCachePackets..MaxCachePackets),
// each with a buffer of slotCap bytes preallocated (0 to grow on demand).
func NewRing(n, slotCap int) *Ring {
	n = min(max(n, MinCachePackets), MaxCachePackets)
	r := &Ring{slots: make([]slot, n), highest: -1}
	var arena []byte
	if slotCap > 0 {
		arena = make([]byte, n*slotCap)
	}
	for i := range r.slots {
		r.slots[i].ext = -1
		if slotCap > 0 {
			r.slots[i].buf = arena[i*slotCap : i*slotCap : (i+1)*slotCap]
		}
	}
	return r
}

// Len returns the ring's capacity in packets.
func (r *Ring) Len() int { return len(r.slots) }

// unwrap maps seq to the extended counter nearest to the newest packet.
// Callers hold mu.
func (r *Ring) unwrap(seq uint16) int64 {
	if r.highest < 0 {
		return int64(seq) + 1<<16 // leave room below the first packet
	}
	return r.highest + int64(int16(seq-uint16(r.highest)))
}

// Insert copies pkt into the slot of seq. A packet far behind the newest
// (older than the ring holds) is ignored; one far behind by more than the
// ring and still "behind" in serial order is taken as the sender restarting
// its numbering, and the ring starts over.
func (r *Ring) Insert(seq uint16, pkt []byte) {
	r.mu.Lock()
	ext := r.unwrap(seq)
	n := int64(len(r.slots))
	switch {
	case ext > r.highest:
		r.highest = ext
	case ext <= r.highest-n:
		// Too old for the window. A sender that restarted its numbering
		// would be stuck here forever, so start over from this packet.
		for i := range r.slots {
			r.slots[i].ext = -1
		}
		ext = int64(seq) + 1<<16
		r.highest = ext
	}
	s := &r.slots[ext%n]
	s.ext = ext
	s.buf = append(s.buf[:0], pkt...)
	r.mu.Unlock()
}

// find returns the slot holding seq, or nil. Callers hold mu.
func (r *Ring) find(seq uint16) *slot {
	if r.highest < 0 {
		return nil
	}
	ext := r.unwrap(seq)
	n := int64(len(r.slots))
	if ext > r.highest || ext <= r.highest-n {
		return nil
	}
	if s := &r.slots[ext%n]; s.ext == ext {
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
