package hlssink

import (
	"bytes"
	"encoding/binary"
	"errors"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/codecs"

	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/media/h264"
)

// videoConfig is a video track's parameters from its sequence header:
// H.264 (avcC) or H.265 (hvcC). The parameter sets are our own copies.
type videoConfig struct {
	hevc          bool
	vps, sps, pps []byte // vps: H.265 only
	lengthSize    int    // bytes of each NAL unit's length prefix
}

func (c *videoConfig) codec() codecs.Codec {
	if c.hevc {
		return &codecs.H265{VPS: c.vps, SPS: c.sps, PPS: c.pps}
	}
	return &codecs.H264{SPS: c.sps, PPS: c.pps}
}

// kind says whether a NAL unit is a parameter set, and which (0 VPS, 1
// SPS, 2 PPS; -1 none), and whether it starts a random access point.
func (c *videoConfig) kind(nalu []byte) (set int, random bool) {
	if c.hevc {
		switch t := (nalu[0] >> 1) & 0x3f; {
		case t == 32:
			return 0, false
		case t == 33:
			return 1, false
		case t == 34:
			return 2, false
		case t >= 16 && t <= 21: // BLA, IDR, CRA
			return -1, true
		}
		return -1, false
	}
	switch nalu[0] & 0x1f {
	case h264.NALSPS:
		return 1, false
	case h264.NALPPS:
		return 2, false
	case h264.NALIDR:
		return -1, true
	}
	return -1, false
}

// videoFrame is a video tag body read: legacy FLV (AVC, or HEVC as codec
// id 12) or enhanced RTMP ("hvc1").
type videoFrame struct {
	hevc    bool
	header  bool // a sequence header: payload is the configuration record
	end     bool // end of sequence, or a packet type carrying no frame
	key     bool
	cts     int32 // ms
	payload []byte
}

var errCodec = errors.New("video codec HLS here does not carry")

func parseVideo(body []byte) (videoFrame, error) {
	var f videoFrame
	if len(body) < 1 {
		return f, flv.ErrShort
	}
	f.key = (body[0]>>4)&7 == flv.FrameKey
	if body[0]&0x80 != 0 { // enhanced RTMP: packet type in the low nibble, FourCC follows
		if len(body) < 5 {
			return f, flv.ErrShort
		}
		if string(body[1:5]) != "hvc1" {
			return f, errCodec
		}
		f.hevc = true
		switch body[0] & 0x0f {
		case 0: // SequenceStart
			f.header, f.payload = true, body[5:]
		case 1: // CodedFrames: composition time, then NAL units
			if len(body) < 8 {
				return f, flv.ErrShort
			}
			f.cts, f.payload = int24(body[5:8]), body[8:]
		case 3: // CodedFramesX: no composition time
			f.payload = body[5:]
		default: // SequenceEnd, Metadata, MPEG-2 TS sequence start
			f.end = true
		}
		return f, nil
	}
	switch body[0] & 0x0f {
	case flv.CodecAVC:
	case flv.CodecHEVC:
		f.hevc = true
	default:
		return f, errCodec
	}
	if len(body) < 5 {
		return f, flv.ErrShort
	}
	switch body[1] {
	case flv.AVCSequenceHeader:
		f.header = true
	case flv.AVCNALU:
	default:
		f.end = true
	}
	f.cts, f.payload = int24(body[2:5]), body[5:]
	return f, nil
}

func int24(b []byte) int32 {
	v := int32(uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]))
	if v&0x800000 != 0 {
		v -= 1 << 24
	}
	return v
}

// parseConfig reads an avcC or hvcC record into our own copies.
func parseConfig(hevc bool, rec []byte) (*videoConfig, error) {
	if !hevc {
		cfg, err := h264.UnmarshalConfig(rec)
		if err != nil {
			return nil, err
		}
		if len(cfg.PPS) == 0 {
			return nil, errors.New("h264: no PPS in configuration record")
		}
		return &videoConfig{sps: bytes.Clone(cfg.SPS[0]), pps: bytes.Clone(cfg.PPS[0]), lengthSize: cfg.LengthSize}, nil
	}
	// HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3.1): 22 bytes
	// of profile fields, lengthSizeMinusOne in byte 21, then arrays of NAL
	// units by type.
	if len(rec) < 23 || rec[0] != 1 {
		return nil, errors.New("h265: bad configuration record")
	}
	c := &videoConfig{hevc: true, lengthSize: int(rec[21]&3) + 1}
	if c.lengthSize == 3 {
		return nil, errors.New("h265: NAL length size 3")
	}
	n, p := int(rec[22]), 23
	for range n {
		if p+3 > len(rec) {
			return nil, errors.New("h265: configuration record too short")
		}
		typ, count := rec[p]&0x3f, int(binary.BigEndian.Uint16(rec[p+1:]))
		p += 3
		for range count {
			if p+2 > len(rec) {
				return nil, errors.New("h265: configuration record too short")
			}
			l := int(binary.BigEndian.Uint16(rec[p:]))
			p += 2
			if p+l > len(rec) || l == 0 {
				return nil, errors.New("h265: configuration record too short")
			}
			nalu := rec[p : p+l]
			p += l
			switch {
			case typ == 32 && c.vps == nil:
				c.vps = bytes.Clone(nalu)
			case typ == 33 && c.sps == nil:
				c.sps = bytes.Clone(nalu)
			case typ == 34 && c.pps == nil:
				c.pps = bytes.Clone(nalu)
			}
		}
	}
	if c.vps == nil || c.sps == nil || c.pps == nil {
		return nil, errors.New("h265: configuration record lacks a VPS, SPS or PPS")
	}
	return c, nil
}

func (st *stream) videoTag(ts uint32, body []byte, now time.Time) {
	s := st.s
	st.wantVideo = true
	f, err := parseVideo(body)
	switch {
	case errors.Is(err, errCodec):
		s.mCodec.Inc()
		return
	case err != nil:
		s.mBadTag.Inc()
		return
	case f.end:
		return
	case f.header:
		if bytes.Equal(body, st.videoSH) {
			return
		}
		cfg, err := parseConfig(f.hevc, f.payload)
		if err != nil {
			s.mBadTag.Inc()
			return
		}
		st.videoSH = append(st.videoSH[:0], body...)
		st.video = cfg
		st.configChanged(ts)
		return
	}
	st.maybeStart(ts)
	m := st.m
	if m == nil || m.video == nil || m.vcfg.hevc != f.hevc {
		s.mNoConfig.Inc()
		return
	}
	if !st.gotKey {
		if !f.key {
			s.mNoKey.Inc()
			return
		}
		st.gotKey = true
	}
	if f.key {
		s.mKeys.Inc()
	}
	nalus, err := splitNALUs(st.nalus[:0], f.payload, m.vcfg.lengthSize)
	st.nalus = nalus
	if err != nil {
		clear(nalus)
		s.mBadTag.Inc()
		return
	}
	if len(nalus) == 0 {
		return
	}
	// gohlslib keeps an in-band parameter set it is given before its init
	// segment; the packet's buffer is reused once released.
	random, sets := false, false
	for i, n := range nalus {
		set, ra := m.vcfg.kind(n)
		random = random || ra
		if set >= 0 {
			sets = true
			nalus[i] = bytes.Clone(n)
		}
	}
	if random && !sets {
		// FLV carries the parameter sets in the sequence header only;
		// gohlslib reads them in band at each random access point (its
		// DTS extraction).
		nalus = m.withSets(nalus)
		st.nalus = nalus
	}
	pts := (int64(ts) + int64(f.cts)) * 90
	if err := m.write(now, pts, nalus); err != nil {
		st.muxError(err)
	}
	st.follow(pts, f.key, random, nalus)
	clear(nalus) // no references to the packet's buffer kept
}

// withSets puts the track's parameter sets in front of au.
func (m *muxer) withSets(au [][]byte) [][]byte {
	sets := [][]byte{m.vcfg.sps, m.vcfg.pps}
	if m.vcfg.hevc {
		sets = [][]byte{m.vcfg.vps, m.vcfg.sps, m.vcfg.pps}
	}
	n := len(sets)
	au = append(au, sets...) // room
	copy(au[n:], au[:len(au)-n])
	copy(au, sets)
	return au
}

func (m *muxer) write(ntp time.Time, pts int64, au [][]byte) error {
	if m.vcfg.hevc {
		return m.mux.WriteH265(m.video, ntp, pts, au)
	}
	return m.mux.WriteH264(m.video, ntp, pts, au)
}

// follow notes a video frame written: its time, and for a keyframe where
// gohlslib starts a segment (the first at least segment_min_duration
// after the last start), that start and its random access NAL unit.
func (st *stream) follow(pts int64, key, random bool, nalus [][]byte) {
	if d := pts - st.lastPTS; d > 0 && d < 90000 {
		st.frameDur = d
	}
	st.lastPTS = pts
	if !key || !random {
		return
	}
	if st.lastIDR == nil || pts-st.segStart >= st.s.cfg.SegmentMinDuration.Microseconds()*90/1000 {
		st.segStart = pts
	}
	for _, n := range nalus {
		if _, ra := st.m.vcfg.kind(n); ra {
			st.lastIDR = append(st.lastIDR[:0], n...)
			return
		}
	}
}

// closeLast makes gohlslib finish the segment in progress at the stream's
// end, which it does only when a keyframe starts the next one: it is given
// a last keyframe (the previous one again), late enough to start a
// segment. That frame opens a segment no playlist will list.
func (st *stream) closeLast() {
	m := st.m
	if m == nil || m.video == nil || st.lastIDR == nil {
		return
	}
	// One frame after the last, so the last segment and part keep their
	// true length, unless the segment is still too short to end there.
	pts := max(st.lastPTS+st.frameDur, st.segStart+st.s.cfg.SegmentMinDuration.Microseconds()*90/1000)
	if err := m.write(time.Now(), pts, m.withSets([][]byte{st.lastIDR})); err != nil {
		st.muxError(err)
	}
}

var errLength = errors.New("hls-sink: NAL unit length beyond the tag")

// splitNALUs cuts an AVCC/HVCC payload (NAL units behind size-byte
// lengths) into dst; the units alias b.
func splitNALUs(dst [][]byte, b []byte, size int) ([][]byte, error) {
	if size < 1 || size > 4 {
		return dst, errLength
	}
	for len(b) > 0 {
		if len(b) < size {
			return dst, errLength
		}
		var n int
		switch size {
		case 1:
			n = int(b[0])
		case 2:
			n = int(binary.BigEndian.Uint16(b))
		case 4:
			n = int(binary.BigEndian.Uint32(b))
		}
		b = b[size:]
		if n > len(b) {
			return dst, errLength
		}
		if n > 0 {
			dst = append(dst, b[:n])
		}
		b = b[n:]
	}
	return dst, nil
}
