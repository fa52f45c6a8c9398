package rtpflv

import (
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/media/rtpheader"
)

// Reason says why the Reassembler dropped something.
type Reason uint8

const (
	// MissingFragment: a tag whose first fragment arrived lost a later one
	// (sequence gap, SSRC change or stream end before its marker).
	MissingFragment Reason = iota
	// SizeMismatch: the fragments' total disagrees with the size the tag
	// header declares.
	SizeMismatch
	// Oversize: the tag header declares a body above the cap.
	Oversize
	// OrphanFragment: fragments of a tag whose first fragment never arrived
	// (after a gap or at the start of listening); counted once per tag.
	OrphanFragment
	// BadHeader: a first fragment whose FLV tag header is not audio, video or
	// script data, or is shorter than 11 bytes.
	BadHeader
	// BadPacket: not a parsable RTP packet.
	BadPacket
	// Stale: a packet older than the next expected one (a duplicate or a
	// late arrival); input should come in order from a reorder stage.
	Stale

	NumReasons
)

var reasonNames = [NumReasons]string{
	MissingFragment: "missing_fragment",
	SizeMismatch:    "size_mismatch",
	Oversize:        "oversize",
	OrphanFragment:  "orphan_fragment",
	BadHeader:       "bad_header",
	BadPacket:       "bad_packet",
	Stale:           "stale",
}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// staleWindow: a packet up to this far behind the expected sequence number
// is a late duplicate; further behind it is a jump (the sender restarted).
const staleWindow = 1024

// staleRunMax: this many stale packets in a row mean the sender's sequence
// moved back for good, so the reassembler resynchronises on it.
const staleRunMax = 64

type state uint8

const (
	// stateResync: the next packet may or may not start a tag (start of
	// listening, after a gap or an SSRC change); it must prove it does.
	stateResync state = iota
	// stateStart: the previous packet carried a marker, so this one starts a tag.
	stateStart
	// stateBody: collecting the continuation fragments of a tag.
	stateBody
	// stateSkip: discarding fragments of a dropped tag up to its marker.
	stateSkip
)

// Reassembler joins the RTP packets of one stream, in sequence order (as a
// reorder stage releases them, possibly with gaps), back into FLV tags. A tag
// is emitted only whole and with a header that agrees with its length;
// everything else is dropped and counted in Drops. It keeps one buffer, so
// once it has seen the stream's largest tag it allocates nothing.
type Reassembler struct {
	// MaxTagSize caps the body size (DataSize) a tag header may declare;
	// 0 means flv.MaxTagSize (16 MiB - 1, all 24 bits can say).
	MaxTagSize int
	// OnDrop, if set, is called once for each drop counted in Drops.
	OnDrop func(Reason)

	// Drops counts drops by reason; Tags counts tags emitted.
	Drops [NumReasons]uint64
	Tags  uint64

	st       state
	started  bool
	ssrc     uint32
	next     uint16 // next expected sequence number
	staleRun int
	want     int // total tag length the header declared
	buf      []byte
}

// Push takes the next packet and returns a tag when pkt completes one. The
// tag aliases pkt (a tag in one packet) or the reassembler's own buffer: it
// is valid until the next Push or Reset and until pkt is reused. pkt itself
// is never kept.
func (r *Reassembler) Push(pkt []byte) []byte {
	h, payload, err := rtpheader.Parse(pkt)
	if err != nil {
		r.drop(BadPacket)
		return nil
	}
	switch {
	case !r.started || h.SSRC != r.ssrc:
		r.abandon()
		r.started, r.ssrc, r.st = true, h.SSRC, stateResync
	case h.Seq != r.next:
		d := int16(h.Seq - r.next)
		if d < 0 && d > -staleWindow && r.staleRun < staleRunMax {
			r.staleRun++
			r.drop(Stale)
			return nil
		}
		r.abandon()
		r.st = stateResync
	}
	r.staleRun = 0
	r.next = h.Seq + 1

	switch r.st {
	case stateResync, stateStart:
		return r.first(h, payload)
	case stateBody:
		r.buf = append(r.buf, payload...)
		if len(r.buf) > r.want {
			r.drop(SizeMismatch)
			r.skipTo(h.Marker)
			return nil
		}
		if !h.Marker {
			return nil
		}
		r.st = stateStart
		if len(r.buf) != r.want {
			r.drop(SizeMismatch)
			return nil
		}
		r.Tags++
		return r.buf
	default: // stateSkip
		if h.Marker {
			r.st = stateStart
		}
		return nil
	}
}

// first handles a packet that starts a tag, or, in stateResync, may: then it
// must look like the first fragment of a tag the sender could have made,
// with the FLV header's timestamp equal to the RTP timestamp, or it is taken
// for the tail of a tag whose start was lost.
func (r *Reassembler) first(h rtpheader.Header, payload []byte) []byte {
	strict := r.st == stateResync
	if len(payload) < flv.HeaderSize {
		r.dropStart(strict, BadHeader, h.Marker)
		return nil
	}
	fh, _ := flv.ParseHeader(payload)
	want := flv.HeaderSize + int(fh.DataSize)
	if fh.Type != flv.TypeAudio && fh.Type != flv.TypeVideo && fh.Type != flv.TypeScript || fh.StreamID != 0 {
		r.dropStart(strict, BadHeader, h.Marker)
		return nil
	}
	if strict && (fh.Timestamp != h.Timestamp || h.Marker && len(payload) != want || !h.Marker && len(payload) >= want) {
		r.dropStart(true, BadHeader, h.Marker)
		return nil
	}
	limit := r.MaxTagSize
	if limit <= 0 {
		limit = flv.MaxTagSize
	}
	if int(fh.DataSize) > limit {
		r.drop(Oversize)
		r.skipTo(h.Marker)
		return nil
	}
	if h.Marker {
		r.st = stateStart
		if len(payload) != want {
			r.drop(SizeMismatch)
			return nil
		}
		r.Tags++
		return payload
	}
	if len(payload) >= want {
		r.drop(SizeMismatch)
		r.skipTo(false)
		return nil
	}
	r.want = want
	r.buf = append(r.buf[:0], payload...)
	r.st = stateBody
	return nil
}

// dropStart drops a packet that should have started a tag. In stateResync
// it is more likely the tail of a tag whose start was lost: an orphan.
func (r *Reassembler) dropStart(strict bool, reason Reason, marker bool) {
	if strict {
		reason = OrphanFragment
	}
	r.drop(reason)
	r.skipTo(marker)
}

func (r *Reassembler) skipTo(marker bool) {
	if marker {
		r.st = stateStart
	} else {
		r.st = stateSkip
	}
}

// abandon drops the tag being collected, if any.
func (r *Reassembler) abandon() {
	if r.st == stateBody {
		r.drop(MissingFragment)
	}
	r.st = stateResync
}

func (r *Reassembler) drop(reason Reason) {
	r.Drops[reason]++
	if r.OnDrop != nil {
		r.OnDrop(reason)
	}
}

// Flush drops (and counts) a tag still being collected, as when its stream
// ends, and forgets the SSRC and sequence. The buffer is kept.
func (r *Reassembler) Flush() {
	r.abandon()
	r.started = false
	r.staleRun = 0
}

// Reset is Flush that also lets go of the buffer.
func (r *Reassembler) Reset() {
	r.Flush()
	r.buf = nil
}
