package flv

import "bytes"

// InitKind names the init tags a player needs before any frame.
type InitKind uint8

// Init tag kinds.
const (
	InitNone     InitKind = iota
	InitMetadata          // script tag "onMetaData"
	InitVideo             // AVC/HEVC (legacy or enhanced) sequence header
	InitAudio             // AAC AudioSpecificConfig
)

// onMetaData is the AMF0 string "onMetaData" that opens a metadata script body.
var onMetaData = []byte{0x02, 0x00, 0x0a, 'o', 'n', 'M', 'e', 't', 'a', 'D', 'a', 't', 'a'}

// IsOnMetaData reports a script tag body that starts with the AMF0 string "onMetaData".
func IsOnMetaData(body []byte) bool { return bytes.HasPrefix(body, onMetaData) }

// InitKindOf classifies a tag body of type typ as one of the init tags, or InitNone.
func InitKindOf(typ uint8, body []byte) InitKind {
	switch typ {
	case TypeScript:
		if IsOnMetaData(body) {
			return InitMetadata
		}
	case TypeVideo:
		if v, ok := ParseVideo(body); ok && (v.Codec == CodecAVC || v.Codec == CodecHEVC || v.Enhanced) && v.IsSequenceHeader() {
			return InitVideo
		}
	case TypeAudio:
		if a, ok := ParseAudio(body); ok && a.IsSequenceHeader() {
			return InitAudio
		}
	}
	return InitNone
}

// IsVideoKeyframe reports a video tag body that is a keyframe a decoder can
// start from: frame type 1 carrying a picture, so neither a sequence header
// nor an AVC end of sequence (both also carry the keyframe flag). It is the
// one keyframe rule: a GOP cache starts at one, time to first frame ends at
// one. ParseVideo gives codecs without packet types AVCNALU.
func IsVideoKeyframe(body []byte) bool {
	v, ok := ParseVideo(body)
	return ok && v.FrameType == FrameKey && v.PacketType == AVCNALU
}
