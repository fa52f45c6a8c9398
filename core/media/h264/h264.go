// Package h264 reads the parts of H.264 that a relay needs without decoding:
// the AVC decoder configuration record of FLV/MP4 and the SPS's picture size.
package h264

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// NAL unit types used here.
const (
	NALSlice    = 1
	NALIDR      = 5
	NALSEI      = 6
	NALSPS      = 7
	NALPPS      = 8
	NALAUD      = 9
	NALEndOfSeq = 10
)

// Limits that keep hostile input from costing much.
const (
	maxParamSets = 32
	maxSideMBs   = 1024   // 16384 pixels a side
	maxFrameMBs  = 139264 // level 6.2's largest frame
)

var (
	ErrShort    = errors.New("h264: data too short")
	ErrVersion  = errors.New("h264: unknown AVC configuration version")
	ErrNoSPS    = errors.New("h264: no SPS in configuration record")
	ErrNotSPS   = errors.New("h264: NAL unit is not an SPS")
	ErrBadSPS   = errors.New("h264: malformed SPS")
	ErrTooLarge = errors.New("h264: picture size beyond limits")
)

// Config is an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.2.4.1), the
// body of an FLV AVC sequence header after its 5-byte prefix.
type Config struct {
	Profile       uint8
	Compatibility uint8
	Level         uint8
	LengthSize    int // bytes of each NAL length prefix (1, 2 or 4)
	SPS           [][]byte
	PPS           [][]byte
}

// UnmarshalConfig parses a configuration record. The returned parameter sets
// alias b.
func UnmarshalConfig(b []byte) (*Config, error) {
	if len(b) < 7 {
		return nil, ErrShort
	}
	if b[0] != 1 {
		return nil, fmt.Errorf("%w: %d", ErrVersion, b[0])
	}
	c := &Config{Profile: b[1], Compatibility: b[2], Level: b[3], LengthSize: int(b[4]&3) + 1}
	if c.LengthSize == 3 {
		return nil, fmt.Errorf("%w: NAL length size 3", ErrBadSPS)
	}
	p := 5
	var err error
	if c.SPS, p, err = readSets(b, p, int(b[p]&0x1f)); err != nil {
		return nil, err
	}
	if p >= len(b) {
		return nil, ErrShort
	}
	if c.PPS, _, err = readSets(b, p, int(b[p])); err != nil {
		return nil, err
	}
	if len(c.SPS) == 0 {
		return nil, ErrNoSPS
	}
	return c, nil
}

func readSets(b []byte, p, n int) ([][]byte, int, error) {
	p++ // the count byte
	if n > maxParamSets {
		return nil, p, fmt.Errorf("%w: %d parameter sets", ErrBadSPS, n)
	}
	sets := make([][]byte, 0, n)
	for i := 0; i < n; i++ {
		if p+2 > len(b) {
			return nil, p, ErrShort
		}
		l := int(binary.BigEndian.Uint16(b[p:]))
		p += 2
		if l == 0 || p+l > len(b) {
			return nil, p, ErrShort
		}
		sets = append(sets, b[p:p+l])
		p += l
	}
	return sets, p, nil
}

// SPS is what a relay needs from a sequence parameter set.
type SPS struct {
	Profile      uint8
	Level        uint8
	ID           uint32
	ChromaFormat uint32 // 0 mono, 1 4:2:0, 2 4:2:2, 3 4:4:4
	BitDepth     uint32 // luma bits per sample
	// Width and Height are the displayed size, cropping applied.
	Width, Height int
	FrameMBsOnly  bool
}

// ParseSPS reads an SPS NAL unit (header byte included, emulation
// prevention bytes still in).
func ParseSPS(nal []byte) (SPS, error) {
	var s SPS
	if len(nal) < 4 {
		return s, ErrShort
	}
	if nal[0]&0x1f != NALSPS {
		return s, ErrNotSPS
	}
	r := bitReader{b: unescape(nal[1:])}
	s.Profile = uint8(r.bits(8))
	r.bits(8) // constraint flags
	s.Level = uint8(r.bits(8))
	s.ID = r.ue()
	s.ChromaFormat, s.BitDepth = 1, 8
	separateColourPlane := false
	switch s.Profile {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
		s.ChromaFormat = r.ue()
		if s.ChromaFormat > 3 {
			return s, fmt.Errorf("%w: chroma_format_idc %d", ErrBadSPS, s.ChromaFormat)
		}
		if s.ChromaFormat == 3 {
			separateColourPlane = r.bit()
		}
		s.BitDepth = r.ue() + 8
		r.ue()       // bit_depth_chroma_minus8
		r.bit()      // qpprime_y_zero_transform_bypass_flag
		if r.bit() { // seq_scaling_matrix_present_flag
			n := 8
			if s.ChromaFormat == 3 {
				n = 12
			}
			for i := 0; i < n; i++ {
				if r.bit() {
					size := 16
					if i >= 6 {
						size = 64
					}
					skipScalingList(&r, size)
				}
			}
		}
	}
	r.ue() // log2_max_frame_num_minus4
	switch pocType := r.ue(); pocType {
	case 0:
		r.ue() // log2_max_pic_order_cnt_lsb_minus4
	case 1:
		r.bit() // delta_pic_order_always_zero_flag
		r.se()  // offset_for_non_ref_pic
		r.se()  // offset_for_top_to_bottom_field
		n := r.ue()
		if n > 255 {
			return s, fmt.Errorf("%w: %d POC cycle entries", ErrBadSPS, n)
		}
		for i := uint32(0); i < n; i++ {
			r.se()
		}
	case 2:
	default:
		return s, fmt.Errorf("%w: pic_order_cnt_type %d", ErrBadSPS, pocType)
	}
	r.ue()  // max_num_ref_frames
	r.bit() // gaps_in_frame_num_value_allowed_flag
	wMBs := r.ue() + 1
	hMapUnits := r.ue() + 1
	s.FrameMBsOnly = r.bit()
	if !s.FrameMBsOnly {
		r.bit() // mb_adaptive_frame_field_flag
	}
	r.bit() // direct_8x8_inference_flag
	if r.err != nil {
		return s, fmt.Errorf("%w: %v", ErrBadSPS, r.err)
	}
	frameFactor := uint32(2)
	if s.FrameMBsOnly {
		frameFactor = 1
	}
	if wMBs > maxSideMBs || uint64(hMapUnits)*uint64(frameFactor) > maxSideMBs || wMBs*hMapUnits*frameFactor > maxFrameMBs {
		return s, ErrTooLarge
	}
	width := int(wMBs) * 16
	height := int(hMapUnits*frameFactor) * 16
	if r.bit() { // frame_cropping_flag
		cropX, cropY := 1, int(frameFactor)
		if s.ChromaFormat != 0 && !separateColourPlane {
			subW, subH := 2, 2 // 4:2:0
			switch s.ChromaFormat {
			case 2:
				subH = 1
			case 3:
				subW, subH = 1, 1
			}
			cropX, cropY = subW, subH*int(frameFactor)
		}
		left, right, top, bottom := r.ue(), r.ue(), r.ue(), r.ue()
		if r.err != nil {
			return s, fmt.Errorf("%w: %v", ErrBadSPS, r.err)
		}
		cw := uint64(left+right) * uint64(cropX)
		ch := uint64(top+bottom) * uint64(cropY)
		if cw >= uint64(width) || ch >= uint64(height) {
			return s, fmt.Errorf("%w: cropping %d×%d of %d×%d", ErrBadSPS, cw, ch, width, height)
		}
		width -= int(cw)
		height -= int(ch)
	}
	if r.err != nil {
		return s, fmt.Errorf("%w: %v", ErrBadSPS, r.err)
	}
	s.Width, s.Height = width, height
	return s, nil
}

func skipScalingList(r *bitReader, size int) {
	last, next := int32(8), int32(8)
	for j := 0; j < size && r.err == nil; j++ {
		if next != 0 {
			next = (last + r.se() + 256) % 256
		}
		if next != 0 {
			last = next
		}
	}
}

// unescape drops emulation prevention bytes (00 00 03 → 00 00). It copies
// only when there is something to drop.
func unescape(b []byte) []byte {
	zeros := 0
	for i, c := range b {
		if zeros >= 2 && c == 3 {
			out := make([]byte, 0, len(b))
			out = append(out, b[:i]...)
			zeros = 0
			for _, c := range b[i+1:] {
				if zeros >= 2 && c == 3 {
					zeros = 0
					continue
				}
				out = append(out, c)
				if c == 0 {
					zeros++
				} else {
					zeros = 0
				}
			}
			return out
		}
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return b
}

var errEOD = errors.New("end of data")

type bitReader struct {
	b   []byte
	pos int // in bits
	err error
}

func (r *bitReader) bit() bool { return r.bits(1) == 1 }

func (r *bitReader) bits(n int) uint32 {
	var v uint32
	for i := 0; i < n; i++ {
		if r.pos >= len(r.b)*8 {
			r.err = errEOD
			return 0
		}
		v = v<<1 | uint32(r.b[r.pos>>3]>>(7-r.pos&7))&1
		r.pos++
	}
	return v
}

// ue reads an unsigned Exp-Golomb number (at most 32 bits of value).
func (r *bitReader) ue() uint32 {
	zeros := 0
	for !r.bit() {
		if r.err != nil {
			return 0
		}
		zeros++
		if zeros > 31 {
			r.err = errors.New("exp-golomb code too long")
			return 0
		}
	}
	return uint32((uint64(1)<<zeros)-1) + r.bits(zeros)
}

func (r *bitReader) se() int32 {
	v := r.ue()
	if v&1 == 1 {
		return int32((v + 1) / 2)
	}
	return -int32(v / 2)
}

// ConfigSize is a convenience: the displayed size from a configuration
// record's first SPS.
func ConfigSize(record []byte) (SPS, *Config, error) {
	c, err := UnmarshalConfig(record)
	if err != nil {
		return SPS{}, nil, err
	}
	s, err := ParseSPS(c.SPS[0])
	return s, c, err
}

// MarshalConfig builds a configuration record from SPS and PPS NAL units,
// with 4-byte NAL lengths.
func MarshalConfig(sps, pps [][]byte) ([]byte, error) {
	if len(sps) == 0 || len(sps[0]) < 4 {
		return nil, ErrNoSPS
	}
	if len(sps) > maxParamSets || len(pps) > maxParamSets {
		return nil, fmt.Errorf("%w: too many parameter sets", ErrBadSPS)
	}
	b := []byte{1, sps[0][1], sps[0][2], sps[0][3], 0xff, 0xe0 | byte(len(sps))}
	for _, s := range sps {
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
		b = append(b, s...)
	}
	b = append(b, byte(len(pps)))
	for _, p := range pps {
		b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
		b = append(b, p...)
	}
	return b, nil
}
