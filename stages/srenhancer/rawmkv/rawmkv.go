// Package rawmkv writes uncompressed video frames as a live Matroska stream,
// the smallest container that carries a timestamp per raw frame into ffmpeg.
package rawmkv

import (
	"encoding/binary"
	"errors"
)

// Element ids (Matroska specification).
const (
	idEBML               = 0x1A45DFA3
	idEBMLVersion        = 0x4286
	idEBMLReadVersion    = 0x42F7
	idEBMLMaxIDLength    = 0x42F2
	idEBMLMaxSizeLength  = 0x42F3
	idDocType            = 0x4282
	idDocTypeVersion     = 0x4287
	idDocTypeReadVersion = 0x4285
	idSegment            = 0x18538067
	idInfo               = 0x1549A966
	idTimecodeScale      = 0x2AD7B1
	idMuxingApp          = 0x4D80
	idWritingApp         = 0x5741
	idTracks             = 0x1654AE6B
	idTrackEntry         = 0xAE
	idTrackNumber        = 0xD7
	idTrackUID           = 0x73C5
	idTrackType          = 0x83
	idCodecID            = 0x86
	idVideo              = 0xE0
	idPixelWidth         = 0xB0
	idPixelHeight        = 0xBA
	idColourSpace        = 0x2EB524
	idCluster            = 0x1F43B675
	idTimecode           = 0xE7
	idSimpleBlock        = 0xA3
)

// ErrFourCC is returned for a pixel format name that is not four bytes.
var ErrFourCC = errors.New("rawmkv: pixel format must be a FourCC such as I420")

// Header returns the stream header for one uncompressed video track of
// width×height pixels in pixel format fourcc ("I420" is yuv420p), with
// timestamps counted in units of tickNs nanoseconds.
func Header(width, height int, fourcc string, tickNs uint64) ([]byte, error) {
	if len(fourcc) != 4 {
		return nil, ErrFourCC
	}
	var ebml, info, video, entry, tracks []byte
	ebml = appendUint(ebml, idEBMLVersion, 1)
	ebml = appendUint(ebml, idEBMLReadVersion, 1)
	ebml = appendUint(ebml, idEBMLMaxIDLength, 4)
	ebml = appendUint(ebml, idEBMLMaxSizeLength, 8)
	ebml = appendString(ebml, idDocType, "matroska")
	ebml = appendUint(ebml, idDocTypeVersion, 4)
	ebml = appendUint(ebml, idDocTypeReadVersion, 2)

	info = appendUint(info, idTimecodeScale, tickNs)
	info = appendString(info, idMuxingApp, "mediapipe")
	info = appendString(info, idWritingApp, "mediapipe")

	video = appendUint(video, idPixelWidth, uint64(width))
	video = appendUint(video, idPixelHeight, uint64(height))
	video = appendString(video, idColourSpace, fourcc)

	entry = appendUint(entry, idTrackNumber, 1)
	entry = appendUint(entry, idTrackUID, 1)
	entry = appendUint(entry, idTrackType, 1) // video
	entry = appendString(entry, idCodecID, "V_UNCOMPRESSED")
	entry = appendMaster(entry, idVideo, video)
	tracks = appendMaster(tracks, idTrackEntry, entry)

	var b []byte
	b = appendMaster(b, idEBML, ebml)
	b = appendID(b, idSegment)
	b = append(b, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF) // unknown size: a live stream
	b = appendMaster(b, idInfo, info)
	b = appendMaster(b, idTracks, tracks)
	return b, nil
}

// AppendFrameHeader appends what precedes a frame of n bytes: a cluster of
// its own at timestamp ts (in ticks) holding one key SimpleBlock. The frame's
// bytes follow directly.
func AppendFrameHeader(dst []byte, ts uint64, n int) []byte {
	var buf [16]byte
	tc := appendUint(buf[:0], idTimecode, ts)
	blockSize := 4 + n
	clusterSize := len(tc) + 1 + sizeLen(uint64(blockSize)) + blockSize
	dst = appendID(dst, idCluster)
	dst = appendSize(dst, uint64(clusterSize))
	dst = append(dst, tc...)
	dst = appendID(dst, idSimpleBlock)
	dst = appendSize(dst, uint64(blockSize))
	return append(dst, 0x81, 0, 0, 0x80) // track 1, relative time 0, keyframe
}

func appendID(b []byte, id uint32) []byte {
	switch {
	case id >= 1<<24:
		return append(b, byte(id>>24), byte(id>>16), byte(id>>8), byte(id))
	case id >= 1<<16:
		return append(b, byte(id>>16), byte(id>>8), byte(id))
	case id >= 1<<8:
		return append(b, byte(id>>8), byte(id))
	}
	return append(b, byte(id))
}

// sizeLen is the length of the shortest EBML size vint for v.
func sizeLen(v uint64) int {
	n := 1
	for n < 8 && v >= 1<<(7*n)-1 { // all ones is reserved for "unknown"
		n++
	}
	return n
}

func appendSize(b []byte, v uint64) []byte {
	n := sizeLen(v)
	v |= 1 << (7 * n)
	for i := n - 1; i >= 0; i-- {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}

func appendUint(b []byte, id uint32, v uint64) []byte {
	var tmp [8]byte
	binary.BigEndian.PutUint64(tmp[:], v)
	i := 0
	for i < 7 && tmp[i] == 0 {
		i++
	}
	b = appendID(b, id)
	b = appendSize(b, uint64(8-i))
	return append(b, tmp[i:]...)
}

func appendString(b []byte, id uint32, s string) []byte {
	b = appendID(b, id)
	b = appendSize(b, uint64(len(s)))
	return append(b, s...)
}

func appendMaster(b []byte, id uint32, body []byte) []byte {
	b = appendID(b, id)
	b = appendSize(b, uint64(len(body)))
	return append(b, body...)
}
