// Package flv reads and writes FLV tags and files as bytes: the 11-byte tag
// header, the video and audio tag prefixes, file header and PreviousTagSize.
// No I/O beyond io.Reader/io.Writer, no goroutines.
package flv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// HeaderSize is the length of an FLV tag header.
const HeaderSize = 11

// Tag types.
const (
	TypeAudio  uint8 = 8
	TypeVideo  uint8 = 9
	TypeScript uint8 = 18
)

// MaxTagSize caps a tag's body: bigger is refused rather than allocated.
// 16 MiB is the most the 24-bit size field can say.
const MaxTagSize = 1<<24 - 1

var (
	ErrShort     = errors.New("flv: tag shorter than its header")
	ErrSize      = errors.New("flv: tag size disagrees with its header")
	ErrTooLarge  = errors.New("flv: tag exceeds the size cap")
	ErrNotFLV    = errors.New("flv: not an FLV file")
	ErrBadTagTyp = errors.New("flv: unknown tag type")
)

// Header is a parsed tag header.
type Header struct {
	Type      uint8
	DataSize  uint32 // body length
	Timestamp uint32 // ms, extended byte included
	StreamID  uint32 // always 0 in practice
}

// PutHeader writes an 11-byte tag header into b[:11].
func PutHeader(b []byte, typ uint8, dataSize, timestamp uint32) {
	_ = b[10]
	b[0] = typ & 0x1f
	b[1], b[2], b[3] = byte(dataSize>>16), byte(dataSize>>8), byte(dataSize)
	b[4], b[5], b[6] = byte(timestamp>>16), byte(timestamp>>8), byte(timestamp)
	b[7] = byte(timestamp >> 24)
	b[8], b[9], b[10] = 0, 0, 0
}

// ParseHeader reads the header at the start of b.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, ErrShort
	}
	h := Header{
		Type:      b[0] & 0x1f,
		DataSize:  uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]),
		Timestamp: uint32(b[4])<<16 | uint32(b[5])<<8 | uint32(b[6]) | uint32(b[7])<<24,
		StreamID:  uint32(b[8])<<16 | uint32(b[9])<<8 | uint32(b[10]),
	}
	return h, nil
}

// Check parses a whole tag (header + body, no PreviousTagSize) and verifies
// that its declared size matches len(tag) and maxBody (0: MaxTagSize).
func Check(tag []byte, maxBody int) (Header, error) {
	h, err := ParseHeader(tag)
	if err != nil {
		return h, err
	}
	if maxBody <= 0 {
		maxBody = MaxTagSize
	}
	if int(h.DataSize) > maxBody {
		return h, fmt.Errorf("%w: %d bytes", ErrTooLarge, h.DataSize)
	}
	if int(h.DataSize) != len(tag)-HeaderSize {
		return h, fmt.Errorf("%w: header says %d, tag holds %d", ErrSize, h.DataSize, len(tag)-HeaderSize)
	}
	return h, nil
}

// AppendTag appends a whole tag (header + body) to dst.
func AppendTag(dst []byte, typ uint8, timestamp uint32, body []byte) []byte {
	n := len(dst)
	dst = append(dst, make([]byte, HeaderSize)...)
	PutHeader(dst[n:], typ, uint32(len(body)), timestamp)
	return append(dst, body...)
}

// Video codec ids and frame types of the first body byte.
const (
	CodecAVC  = 7
	CodecHEVC = 12

	FrameKey   = 1
	FrameInter = 2

	AVCSequenceHeader = 0
	AVCNALU           = 1
	AVCEndOfSequence  = 2
)

// Audio codec id of AAC; AAC packet types.
const (
	SoundAAC          = 10
	AACSequenceHeader = 0
	AACRaw            = 1
)

// VideoInfo describes a video tag body.
type VideoInfo struct {
	FrameType  uint8
	Codec      uint8
	PacketType uint8 // AVC/HEVC packet type (sequence header, NALU, end)
	CTS        int32 // composition time offset (ms)
	Enhanced   bool  // enhanced RTMP (FourCC) header
}

// IsSequenceHeader reports a codec configuration record.
func (v VideoInfo) IsSequenceHeader() bool { return v.PacketType == AVCSequenceHeader }

// ParseVideo reads the prefix of a video tag body.
func ParseVideo(body []byte) (VideoInfo, bool) {
	if len(body) < 1 {
		return VideoInfo{}, false
	}
	v := VideoInfo{FrameType: (body[0] >> 4) & 0x7, Codec: body[0] & 0x0f}
	if body[0]&0x80 != 0 { // enhanced RTMP: low nibble is the packet type, FourCC follows
		v.Enhanced = true
		v.PacketType = body[0] & 0x0f
		if v.PacketType == 0 {
			v.PacketType = AVCSequenceHeader
		} else if v.PacketType == 2 {
			v.PacketType = AVCEndOfSequence
		} else {
			v.PacketType = AVCNALU
		}
		if len(body) >= 5 && string(body[1:5]) == "hvc1" {
			v.Codec = CodecHEVC
		}
		return v, len(body) >= 5
	}
	if v.Codec == CodecAVC || v.Codec == CodecHEVC {
		if len(body) < 5 {
			return v, false
		}
		v.PacketType = body[1]
		cts := int32(uint32(body[2])<<16 | uint32(body[3])<<8 | uint32(body[4]))
		if cts&0x800000 != 0 {
			cts -= 1 << 24
		}
		v.CTS = cts
	} else {
		v.PacketType = AVCNALU
	}
	return v, true
}

// AudioInfo describes an audio tag body.
type AudioInfo struct {
	Codec      uint8
	PacketType uint8 // AAC packet type; AACRaw for other codecs
}

// IsSequenceHeader reports an AAC AudioSpecificConfig.
func (a AudioInfo) IsSequenceHeader() bool {
	return a.Codec == SoundAAC && a.PacketType == AACSequenceHeader
}

// ParseAudio reads the prefix of an audio tag body.
func ParseAudio(body []byte) (AudioInfo, bool) {
	if len(body) < 1 {
		return AudioInfo{}, false
	}
	a := AudioInfo{Codec: body[0] >> 4, PacketType: AACRaw}
	if a.Codec == SoundAAC {
		if len(body) < 2 {
			return a, false
		}
		a.PacketType = body[1]
	}
	return a, true
}

// FileHeader returns the 9-byte FLV file header plus PreviousTagSize0.
func FileHeader(hasAudio, hasVideo bool) []byte {
	flags := byte(0)
	if hasAudio {
		flags |= 4
	}
	if hasVideo {
		flags |= 1
	}
	return []byte{'F', 'L', 'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0}
}

// AppendPreviousTagSize appends the 4-byte size that follows each tag in a file.
func AppendPreviousTagSize(dst []byte, tagLen int) []byte {
	return binary.BigEndian.AppendUint32(dst, uint32(tagLen))
}

// Reader reads tags from an FLV file or HTTP-FLV body.
type Reader struct {
	r       io.Reader
	hdr     [HeaderSize]byte
	started bool
	MaxBody int // 0: MaxTagSize
}

// NewReader returns a Reader that checks the file header on first use.
func NewReader(r io.Reader) *Reader { return &Reader{r: r} }

// Next returns the next whole tag (header + body), freshly allocated.
// io.EOF at a clean end.
func (r *Reader) Next() ([]byte, error) {
	if !r.started {
		var fh [13]byte
		if _, err := io.ReadFull(r.r, fh[:]); err != nil {
			return nil, fmt.Errorf("flv: reading file header: %w", err)
		}
		if fh[0] != 'F' || fh[1] != 'L' || fh[2] != 'V' {
			return nil, ErrNotFLV
		}
		skip := int(binary.BigEndian.Uint32(fh[5:9])) - 9
		if skip < 0 || skip > 1024 {
			return nil, ErrNotFLV
		}
		if skip > 0 {
			if _, err := io.CopyN(io.Discard, r.r, int64(skip)); err != nil {
				return nil, fmt.Errorf("flv: reading file header: %w", err)
			}
		}
		r.started = true
	}
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("flv: truncated tag header: %w", err)
		}
		return nil, err
	}
	h, _ := ParseHeader(r.hdr[:])
	max := r.MaxBody
	if max <= 0 {
		max = MaxTagSize
	}
	if int(h.DataSize) > max {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, h.DataSize)
	}
	tag := make([]byte, HeaderSize+int(h.DataSize)+4)
	copy(tag, r.hdr[:])
	if _, err := io.ReadFull(r.r, tag[HeaderSize:]); err != nil {
		return nil, fmt.Errorf("flv: truncated tag body: %w", err)
	}
	return tag[:HeaderSize+int(h.DataSize)], nil
}

// ReadAll reads every tag until EOF.
func ReadAll(r io.Reader) ([][]byte, error) {
	fr := NewReader(r)
	var tags [][]byte
	for {
		t, err := fr.Next()
		if err == io.EOF {
			return tags, nil
		}
		if err != nil {
			return tags, err
		}
		tags = append(tags, t)
	}
}
