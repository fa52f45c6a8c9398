package flv

import "testing"

func TestKinds(t *testing.T) {
	cases := []struct {
		name string
		typ  uint8
		body []byte
		init InitKind
		key  bool
	}{
		{"onMetaData", TypeScript, append(append([]byte{}, onMetaData...), 8, 0, 0, 0, 0), InitMetadata, false},
		{"other script", TypeScript, []byte{2, 0, 4, 'o', 'n', 'X', 'Y'}, InitNone, false},
		{"avc sequence header", TypeVideo, []byte{0x17, 0, 0, 0, 0, 1}, InitVideo, false},
		{"avc keyframe", TypeVideo, []byte{0x17, 1, 0, 0, 0, 0}, InitNone, true},
		{"avc inter frame", TypeVideo, []byte{0x27, 1, 0, 0, 0, 0}, InitNone, false},
		{"avc end of sequence", TypeVideo, []byte{0x17, 2, 0, 0, 0}, InitNone, false},
		{"hevc sequence header", TypeVideo, []byte{0x1c, 0, 0, 0, 0}, InitVideo, false},
		{"enhanced hvc1 sequence start", TypeVideo, []byte{0x90, 'h', 'v', 'c', '1'}, InitVideo, false},
		{"enhanced hvc1 keyframe", TypeVideo, []byte{0x91, 'h', 'v', 'c', '1', 0, 0, 0}, InitNone, true},
		{"avc keyframe, unknown packet type", TypeVideo, []byte{0x17, 3, 0, 0, 0}, InitNone, false},
		{"avc keyframe cut short", TypeVideo, []byte{0x17, 1, 0}, InitNone, false},
		{"hevc keyframe", TypeVideo, []byte{0x1c, 1, 0, 0, 0, 0}, InitNone, true},
		{"enhanced hvc1 sequence end", TypeVideo, []byte{0x92, 'h', 'v', 'c', '1'}, InitNone, false},
		{"enhanced hvc1 keyframe cut short", TypeVideo, []byte{0x91, 'h', 'v'}, InitNone, false},
		{"enhanced hvc1 inter frame", TypeVideo, []byte{0xa1, 'h', 'v', 'c', '1', 0, 0, 0}, InitNone, false},
		{"sorenson keyframe", TypeVideo, []byte{0x12, 0}, InitNone, true},
		{"sorenson inter frame", TypeVideo, []byte{0x22, 0}, InitNone, false},
		{"aac sequence header", TypeAudio, []byte{0xaf, 0, 0x12, 0x10}, InitAudio, false},
		{"aac raw", TypeAudio, []byte{0xaf, 1, 0x21}, InitNone, false},
		{"mp3", TypeAudio, []byte{0x2f, 0xff}, InitNone, false},
		{"empty video", TypeVideo, nil, InitNone, false},
	}
	for _, c := range cases {
		if got := InitKindOf(c.typ, c.body); got != c.init {
			t.Errorf("%s: InitKindOf = %d, want %d", c.name, got, c.init)
		}
		if c.typ == TypeVideo {
			if got := IsVideoKeyframe(c.body); got != c.key {
				t.Errorf("%s: IsVideoKeyframe = %v, want %v", c.name, got, c.key)
			}
		}
	}
}
