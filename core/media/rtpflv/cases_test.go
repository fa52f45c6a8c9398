package rtpflv

import (
	"github.com/mediapipe/mediapipe/core/media/flv"
)

// The payload limit and type the table mostly uses: the sizes a cloud sends
// over a 1500-byte MTU path, and a dynamic payload type.
const (
	maxPayload  = 1180
	payloadType = 100
)

// fragCase is one row of the table the unit tests, the benchmarks and the
// fuzz seeds share.
type fragCase struct {
	name       string
	tag        []byte // whole FLV tag
	maxPayload int
	seq        uint16 // first sequence number
	packets    int    // packets the tag must become
}

// body returns n bytes of a recognisable, non-constant pattern.
func body(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed
	}
	return b
}

func tag(typ uint8, ts uint32, bodyLen int) []byte {
	return flv.AppendTag(nil, typ, ts, body(bodyLen, byte(ts)))
}

var fragCases = []fragCase{
	{name: "empty_body", tag: tag(flv.TypeScript, 0, 0), maxPayload: maxPayload, seq: 1, packets: 1},
	{name: "audio_aac", tag: tag(flv.TypeAudio, 23, 371), maxPayload: maxPayload, seq: 100, packets: 1},
	{name: "exactly_max_payload", tag: tag(flv.TypeVideo, 40, maxPayload-flv.HeaderSize), maxPayload: maxPayload, seq: 7, packets: 1},
	{name: "one_byte_over", tag: tag(flv.TypeVideo, 80, maxPayload-flv.HeaderSize+1), maxPayload: maxPayload, seq: 8, packets: 2},
	{name: "two_exact_fragments", tag: tag(flv.TypeVideo, 120, 2*maxPayload-flv.HeaderSize), maxPayload: maxPayload, seq: 9, packets: 2},
	{name: "keyframe_1MB", tag: tag(flv.TypeVideo, 0x01020304, 1<<20), maxPayload: maxPayload, seq: 1000, packets: (1<<20 + flv.HeaderSize + maxPayload - 1) / maxPayload},
	{name: "seq_wrap", tag: tag(flv.TypeVideo, 0xfffffff0, 5000), maxPayload: 1000, seq: 0xfffe, packets: 6},
	{name: "min_payload_200", tag: tag(flv.TypeAudio, 5, 1000), maxPayload: 200, seq: 65535, packets: 6},
	{name: "max_payload_65000", tag: tag(flv.TypeVideo, 9, 200000), maxPayload: 65000, seq: 3, packets: 4},
}
