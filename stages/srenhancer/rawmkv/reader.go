package rawmkv

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Reader reads the frames of a live Matroska stream of one raw video track,
// as ffmpeg writes it (-f matroska -live 1): each SimpleBlock's payload with
// its timestamp. Everything else is skipped.
type Reader struct {
	r         *bufio.Reader
	scaleNs   uint64 // TimecodeScale
	clusterTC uint64
}

// Errors of Reader.
var (
	ErrNotMatroska = errors.New("rawmkv: not a Matroska stream")
	ErrFrameSize   = errors.New("rawmkv: frame size differs from the buffer")
	ErrElement     = errors.New("rawmkv: malformed element")
)

// maxSkip bounds an element the reader skips over (a hostile size must not
// make it read for ever).
const maxSkip = 64 << 20

// NewReader returns a Reader of r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 64<<10), scaleNs: 1_000_000}
}

// Next reads the next frame into buf, which must be exactly the frame's
// size, and returns its timestamp in milliseconds. io.EOF at a clean end.
func (m *Reader) Next(buf []byte) (ms int64, err error) {
	for {
		id, err := m.readID()
		if err != nil {
			return 0, err
		}
		size, unknown, err := m.readSize()
		if err != nil {
			return 0, unexpected(err)
		}
		switch id {
		case idSegment, idCluster, idInfo:
			continue // descend: their children follow
		case idTimecodeScale, idTimecode:
			v, err := m.readUint(size)
			if err != nil {
				return 0, err
			}
			if id == idTimecode {
				m.clusterTC = v
			} else if v > 0 {
				m.scaleNs = v
			}
		case idSimpleBlock:
			if unknown || size < 4 {
				return 0, ErrElement
			}
			var hd [4]byte // track number (one-byte vint), int16 relative time, flags
			if _, err := io.ReadFull(m.r, hd[:]); err != nil {
				return 0, unexpected(err)
			}
			if hd[0]&0x80 == 0 {
				return 0, fmt.Errorf("%w: track number wider than a byte", ErrElement)
			}
			if hd[3]&0x06 != 0 {
				return 0, fmt.Errorf("%w: laced block", ErrElement)
			}
			if int(size-4) != len(buf) {
				return 0, fmt.Errorf("%w: %d bytes, want %d", ErrFrameSize, size-4, len(buf))
			}
			if _, err := io.ReadFull(m.r, buf); err != nil {
				return 0, unexpected(err)
			}
			rel := int64(int16(binary.BigEndian.Uint16(hd[1:3])))
			ticks := int64(m.clusterTC) + rel
			return ticks * int64(m.scaleNs) / 1_000_000, nil
		default:
			if unknown || size > maxSkip {
				return 0, fmt.Errorf("%w: element %x of size %d", ErrElement, id, size)
			}
			if _, err := m.r.Discard(int(size)); err != nil {
				return 0, unexpected(err)
			}
		}
	}
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readID reads an element id, marker bits kept (as the spec writes ids).
func (m *Reader) readID() (uint32, error) {
	b, err := m.r.ReadByte()
	if err != nil {
		return 0, err // io.EOF between elements is a clean end
	}
	n := 1
	for n <= 4 && b&(0x80>>(n-1)) == 0 {
		n++
	}
	if n > 4 {
		return 0, fmt.Errorf("%w: id byte %#x", ErrElement, b)
	}
	id := uint32(b)
	for i := 1; i < n; i++ {
		c, err := m.r.ReadByte()
		if err != nil {
			return 0, unexpected(err)
		}
		id = id<<8 | uint32(c)
	}
	return id, nil
}

// readSize reads an element size; all value bits set means unknown.
func (m *Reader) readSize() (uint64, bool, error) {
	b, err := m.r.ReadByte()
	if err != nil {
		return 0, false, err
	}
	n := 1
	for n <= 8 && b&(0x80>>(n-1)) == 0 {
		n++
	}
	if n > 8 {
		return 0, false, fmt.Errorf("%w: size byte %#x", ErrElement, b)
	}
	v := uint64(b) & (0xff >> n)
	allOnes := v == 0xff>>n
	for i := 1; i < n; i++ {
		c, err := m.r.ReadByte()
		if err != nil {
			return 0, false, err
		}
		v = v<<8 | uint64(c)
		allOnes = allOnes && c == 0xff
	}
	return v, allOnes, nil
}

func (m *Reader) readUint(size uint64) (uint64, error) {
	if size > 8 {
		return 0, fmt.Errorf("%w: integer of %d bytes", ErrElement, size)
	}
	var v uint64
	for i := uint64(0); i < size; i++ {
		c, err := m.r.ReadByte()
		if err != nil {
			return 0, unexpected(err)
		}
		v = v<<8 | uint64(c)
	}
	return v, nil
}
