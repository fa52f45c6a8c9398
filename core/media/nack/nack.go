// Package nack encodes batches of RFC 4585 generic NACKs (SSRC, packet id,
// bitmask of the 16 following) and converts them to and from sequence numbers.
package nack

import (
	"encoding/binary"
	"errors"
	"slices"
)

// EntrySize is the wire size of one entry: SSRC (4), PID (2), BLP (2).
const EntrySize = 8

// MaxEntries caps one batch so a decoder never allocates more than
// MaxEntries*EntrySize bytes' worth of entries for one frame.
const MaxEntries = 512

// MaxSeqsPerEntry is the most sequence numbers one entry names (PID + 16).
const MaxSeqsPerEntry = 17

var (
	// ErrLength means the batch is not a whole number of entries.
	ErrLength = errors.New("nack: batch length is not a multiple of 8")
	// ErrEmpty means the batch holds no entry.
	ErrEmpty = errors.New("nack: empty batch")
	// ErrTooMany means the batch holds more than MaxEntries entries.
	ErrTooMany = errors.New("nack: too many entries in one batch")
)

// Entry is one generic NACK: PID is lost, and so is PID+i+1 for every bit i
// set in BLP (bit 0 = least significant), exactly as RFC 4585 §6.2.1, with
// the media SSRC in front so one batch can name several streams.
type Entry struct {
	SSRC uint32
	PID  uint16
	BLP  uint16
}

// Count returns how many sequence numbers e names.
func (e Entry) Count() int {
	n := 1
	for b := e.BLP; b != 0; b &= b - 1 {
		n++
	}
	return n
}

// AppendSeqs appends the sequence numbers e names, in order (wrapping past
// 65535 to 0).
func (e Entry) AppendSeqs(dst []uint16) []uint16 {
	dst = append(dst, e.PID)
	for i := uint16(0); i < 16; i++ {
		if e.BLP&(1<<i) != 0 {
			dst = append(dst, e.PID+i+1)
		}
	}
	return dst
}

// Marshal appends the wire form of entries to dst: each entry as SSRC, PID,
// BLP in network byte order, nothing else (the frame around it carries the
// length).
func Marshal(dst []byte, entries []Entry) []byte {
	for _, e := range entries {
		dst = binary.BigEndian.AppendUint32(dst, e.SSRC)
		dst = binary.BigEndian.AppendUint16(dst, e.PID)
		dst = binary.BigEndian.AppendUint16(dst, e.BLP)
	}
	return dst
}

// Unmarshal appends the entries of the batch b to dst. b must hold 1 to
// MaxEntries whole entries.
func Unmarshal(b []byte, dst []Entry) ([]Entry, error) {
	if len(b) == 0 {
		return dst, ErrEmpty
	}
	if len(b)%EntrySize != 0 {
		return dst, ErrLength
	}
	if len(b)/EntrySize > MaxEntries {
		return dst, ErrTooMany
	}
	for ; len(b) >= EntrySize; b = b[EntrySize:] {
		dst = append(dst, Entry{
			SSRC: binary.BigEndian.Uint32(b),
			PID:  binary.BigEndian.Uint16(b[4:]),
			BLP:  binary.BigEndian.Uint16(b[6:]),
		})
	}
	return dst, nil
}

// Less orders sequence numbers by RFC 1982 serial arithmetic: a comes before
// b when b is less than half the number space ahead of it.
func Less(a, b uint16) bool { return a != b && int16(b-a) > 0 }

// FromSeqs appends entries for ssrc naming every sequence number in seqs to
// dst. seqs is sorted in place in wrap-aware order (relative to its first
// element, so the set must span less than half the number space, which any
// receive window does); duplicates are named once.
func FromSeqs(dst []Entry, ssrc uint32, seqs []uint16) []Entry {
	if len(seqs) == 0 {
		return dst
	}
	ref := seqs[0]
	slices.SortFunc(seqs, func(a, b uint16) int {
		return int(int16(a-ref)) - int(int16(b-ref))
	})
	cur := Entry{SSRC: ssrc, PID: seqs[0]}
	for _, s := range seqs[1:] {
		d := s - cur.PID
		switch {
		case d == 0:
		case d <= 16:
			cur.BLP |= 1 << (d - 1)
		default:
			dst = append(dst, cur)
			cur = Entry{SSRC: ssrc, PID: s}
		}
	}
	return append(dst, cur)
}

// Seqs appends every sequence number the entries name to dst, entry by entry.
func Seqs(dst []uint16, entries []Entry) []uint16 {
	for _, e := range entries {
		dst = e.AppendSeqs(dst)
	}
	return dst
}
