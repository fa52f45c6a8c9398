// Package fec holds the fec-encoder and fec-decoder stages: Reed-Solomon
// parity over groups of source RTP packets, sent as RTP on its own SSRC and
// payload type (the wire format is in docs/protocol.md, "Forward error
// correction").
package fec

import (
	"encoding/binary"

	"github.com/klauspost/reedsolomon"
)

// Wire constants of the parity packet.
const (
	rtpHeader  = 12 // the parity packet's own RTP header (no CSRC, no extension)
	fecHeader  = 12 // the FEC header after it
	parityHead = rtpHeader + fecHeader
	fecVersion = 1

	// shardPrefix is the length field before each source packet in its shard.
	shardPrefix = 2

	// MaxGroup is the largest group (k); MaxParity the most parity packets
	// per group (m). They bound what a decoder keeps per group.
	MaxGroup  = 64
	MaxParity = 32
	// MaxShard is the largest shard: a source packet of up to
	// MaxShard-2 bytes is protected; a longer one passes unprotected.
	MaxShard = 4096

	// paritySSRCMask derives the parity SSRC from the source SSRC, so that
	// it is the source's own without per-stream state on either side.
	paritySSRCMask = 0x0FEC0FEC
)

// parity is a parsed parity packet's FEC header.
type parity struct {
	ssrc  uint32 // the protected (source) SSRC
	base  uint16 // the first source sequence number of the group
	k     int    // source packets in the group
	m     int    // parity packets of the group
	index int    // this parity's index, 0..m-1
	shard []byte // the parity shard (aliases the packet)
}

// parseParity reads a parity packet of payload type pt; false when it is
// not one or is malformed.
func parseParity(b []byte, pt uint8) (parity, bool) {
	if len(b) < parityHead+shardPrefix+rtpHeader || b[0]>>6 != 2 || b[0]&0x3f != 0 || b[1]&0x7f != pt {
		return parity{}, false
	}
	h := b[rtpHeader:]
	p := parity{
		ssrc:  binary.BigEndian.Uint32(h[0:]),
		base:  binary.BigEndian.Uint16(h[4:]),
		k:     int(h[6]),
		m:     int(h[7]),
		index: int(h[8]),
		shard: b[parityHead:],
	}
	if h[9] != fecVersion || p.k < 1 || p.k > MaxGroup || p.m < 1 || p.m > MaxParity || p.index >= p.m ||
		int(binary.BigEndian.Uint16(h[10:])) != len(p.shard) || len(p.shard) > MaxShard {
		return parity{}, false
	}
	return p, true
}

// putParityHeader writes a parity packet's RTP and FEC headers into b.
func putParityHeader(b []byte, pt uint8, seq uint16, ts, ssrc uint32, base uint16, k, m, index, shardLen int) {
	b[0] = 2 << 6
	b[1] = pt & 0x7f
	binary.BigEndian.PutUint16(b[2:], seq)
	binary.BigEndian.PutUint32(b[4:], ts)
	binary.BigEndian.PutUint32(b[8:], ssrc^paritySSRCMask)
	h := b[rtpHeader:]
	binary.BigEndian.PutUint32(h[0:], ssrc)
	binary.BigEndian.PutUint16(h[4:], base)
	h[6], h[7], h[8], h[9] = byte(k), byte(m), byte(index), fecVersion
	binary.BigEndian.PutUint16(h[10:], uint16(shardLen))
}

// rtpFields reads what FEC needs of a source RTP packet.
func rtpFields(b []byte) (pt uint8, seq uint16, ts, ssrc uint32, ok bool) {
	if len(b) < rtpHeader || b[0]>>6 != 2 {
		return 0, 0, 0, 0, false
	}
	return b[1] & 0x7f, binary.BigEndian.Uint16(b[2:]), binary.BigEndian.Uint32(b[4:]), binary.BigEndian.Uint32(b[8:]), true
}

// IsParity reports whether b is a parity packet of payload type pt, and
// the SSRC it protects: for a receiver that must route or ignore parity.
func IsParity(b []byte, pt uint8) (protected uint32, ok bool) {
	p, ok := parseParity(b, pt)
	return p.ssrc, ok
}

// putShard writes source packet pkt into shard s: its length, then the
// packet. The padding to the group's shard length is zeroed later.
func putShard(s, pkt []byte) {
	binary.BigEndian.PutUint16(s, uint16(len(pkt)))
	copy(s[shardPrefix:], pkt)
}

// newCodec makes a Reed-Solomon codec for k data and m parity shards. One
// goroutine: shards of a packet's size gain nothing from splitting. No
// GFNI: that path puts a matrix on the heap on every call (about 900 bytes
// per group), the AVX2 one uses a pooled one, at the same speed for shards
// this small.
//
// The library's inversion cache is off: it keeps a matrix for every set of
// missing shards it has rebuilt and never forgets one, so parity a
// stranger chose (or hours of random loss over big groups) would grow it
// without bound; one inversion of at most 64×64 per rebuilt group is cheap.
func newCodec(k, m int) (reedsolomon.Encoder, error) {
	return reedsolomon.New(k, m, reedsolomon.WithMaxGoroutines(1), reedsolomon.WithGFNI(false), reedsolomon.WithAVXGFNI(false),
		reedsolomon.WithInversionCache(false))
}

// resize returns b at length n, keeping its bytes; it allocates only when
// b's capacity is short (room for a full-size packet, so a buffer grows
// once).
func resize(b []byte, n int) []byte {
	if cap(b) >= n {
		return b[:n]
	}
	nb := make([]byte, n, max(n, 1500))
	copy(nb, b)
	return nb
}
