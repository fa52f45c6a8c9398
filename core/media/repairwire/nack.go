package repairwire

// NACK batches: RFC 4585 generic NACKs (SSRC, packet id, bitmask of the 16
// following), converted to and from sequence numbers.

import (
	"encoding/binary"
	"errors"
	"slices"
)

// NACKEntrySize is the wire size of one entry: SSRC (4), PID (2), BLP (2).
const NACKEntrySize = 8

// MaxNACKEntries caps one batch so a decoder never allocates more than
// MaxNACKEntries*NACKEntrySize bytes' worth of entries for one frame.
const MaxNACKEntries = 512

// MaxSeqsPerEntry is the most sequence numbers one entry names (PID + 16).
const MaxSeqsPerEntry = 17

var (
	// ErrNACKLength means the batch is not a whole number of entries.
	ErrNACKLength = errors.New("repairwire: NACK batch length is not a multiple of 8")
	// ErrNACKEmpty means the batch holds no entry.
	ErrNACKEmpty = errors.New("repairwire: empty NACK batch")
	// ErrNACKTooMany means the batch holds more than MaxNACKEntries entries.
	ErrNACKTooMany = errors.New("repairwire: too many entries in one NACK batch")
)

// NACKEntry is one generic NACK: PID is lost, and so is PID+i+1 for every bit i
// set in BLP (bit 0 = least significant), exactly as RFC 4585 §6.2.1, with
// the media SSRC in front so one batch can name several streams.
type NACKEntry struct {
	SSRC uint32
	PID  uint16
	BLP  uint16
}

// Count returns how many sequence numbers e names.
func (e NACKEntry) Count() int {
	n := 1
	for b := e.BLP; b != 0; b &= b - 1 {
		n++
	}
	return n
}

// AppendSeqs appends the sequence numbers e names, in order (wrapping past
// 65535 to 0).
func (e NACKEntry) AppendSeqs(dst []uint16) []uint16 {
	dst = append(dst, e.PID)
	for i := uint16(0); i < 16; i++ {
		if e.BLP&(1<<i) != 0 {
			dst = append(dst, e.PID+i+1)
		}
	}
	return dst
}

// AppendNACK appends the wire form of entries to dst: each entry as SSRC, PID,
// BLP in network byte order, nothing else (the frame around it carries the
// length).
func AppendNACK(dst []byte, entries []NACKEntry) []byte {
	for _, e := range entries {
		dst = binary.BigEndian.AppendUint32(dst, e.SSRC)
		dst = binary.BigEndian.AppendUint16(dst, e.PID)
		dst = binary.BigEndian.AppendUint16(dst, e.BLP)
	}
	return dst
}

// ParseNACK appends the entries of the batch b to dst. b must hold 1 to
// MaxNACKEntries whole entries.
func ParseNACK(b []byte, dst []NACKEntry) ([]NACKEntry, error) {
	if len(b) == 0 {
		return dst, ErrNACKEmpty
	}
	if len(b)%NACKEntrySize != 0 {
		return dst, ErrNACKLength
	}
	if len(b)/NACKEntrySize > MaxNACKEntries {
		return dst, ErrNACKTooMany
	}
	for ; len(b) >= NACKEntrySize; b = b[NACKEntrySize:] {
		dst = append(dst, NACKEntry{
			SSRC: binary.BigEndian.Uint32(b),
			PID:  binary.BigEndian.Uint16(b[4:]),
			BLP:  binary.BigEndian.Uint16(b[6:]),
		})
	}
	return dst, nil
}

// SeqLess orders sequence numbers by RFC 1982 serial arithmetic: a comes before
// b when b is less than half the number space ahead of it.
func SeqLess(a, b uint16) bool { return a != b && int16(b-a) > 0 }

// FromSeqs appends entries for ssrc naming every sequence number in seqs to
// dst. seqs is sorted in place in wrap-aware order (relative to its first
// element, so the set must span less than half the number space, which any
// receive window does); duplicates are named once.
func FromSeqs(dst []NACKEntry, ssrc uint32, seqs []uint16) []NACKEntry {
	if len(seqs) == 0 {
		return dst
	}
	ref := seqs[0]
	slices.SortFunc(seqs, func(a, b uint16) int {
		return int(int16(a-ref)) - int(int16(b-ref))
	})
	cur := NACKEntry{SSRC: ssrc, PID: seqs[0]}
	for _, s := range seqs[1:] {
		d := s - cur.PID
		switch {
		case d == 0:
		case d <= 16:
			cur.BLP |= 1 << (d - 1)
		default:
			dst = append(dst, cur)
			cur = NACKEntry{SSRC: ssrc, PID: s}
		}
	}
	return append(dst, cur)
}

// Seqs appends every sequence number the entries name to dst, entry by entry.
func Seqs(dst []uint16, entries []NACKEntry) []uint16 {
	for _, e := range entries {
		dst = e.AppendSeqs(dst)
	}
	return dst
}
