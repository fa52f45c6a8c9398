// Package fecparity tells fec-encoder's parity packets from source packets
// by their header alone, for stages that must not take parity for media
// (udp-sink, rtp-reorder) without importing the FEC stages; stages/fec
// checks that it agrees with its own parser.
package fecparity

import "encoding/binary"

// The parity packet's layout (docs/protocol.md, "Forward error
// correction"): a 12-byte RTP header whose SSRC is the protected SSRC xor
// SSRCMask, then the FEC header: protected SSRC (4), base (2), k (1), m
// (1), index (1), version (1), shard length (2), then the shard.
const (
	rtpHeader = 12
	fecHeader = 12
	version   = 1
	maxGroup  = 64
	maxParity = 32
	maxShard  = 4096
	minShard  = 2 + rtpHeader // the length prefix and a source RTP header

	// SSRCMask ties a parity packet's own SSRC to the SSRC it protects.
	SSRCMask = 0x0FEC0FEC
)

// Is reports whether b is a parity packet, of whatever payload type: a
// version 2 RTP header without CSRC or extension whose SSRC is the FEC
// header's protected SSRC masked, and a well-formed FEC header. A source
// packet passes only if its payload happens to repeat its own SSRC masked,
// followed by a valid FEC header.
func Is(b []byte) bool {
	if len(b) < rtpHeader+fecHeader+minShard || b[0] != 2<<6 {
		return false
	}
	h := b[rtpHeader:]
	protected := binary.BigEndian.Uint32(h)
	k, m, index := int(h[6]), int(h[7]), int(h[8])
	shard := len(b) - rtpHeader - fecHeader
	return binary.BigEndian.Uint32(b[8:]) == protected^SSRCMask &&
		h[9] == version && k >= 1 && k <= maxGroup && m >= 1 && m <= maxParity && index < m &&
		int(binary.BigEndian.Uint16(h[10:])) == shard && shard <= maxShard
}
