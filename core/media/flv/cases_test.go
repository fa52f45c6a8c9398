package flv

// tagCase is one row of the table the unit tests, the benchmarks and the
// fuzz seeds share: a tag as it arrives off the network, and what each
// parser says of it.
type tagCase struct {
	name    string
	tag     []byte // header + body, as received
	hdr     Header // ParseHeader's reading
	maxBody int    // Check's cap (0: MaxTagSize)
	err     error  // Check's error (wrapped); nil: a whole tag
	init    InitKind
	key     bool // IsVideoKeyframe of the body
	video   *VideoInfo
	audio   *AudioInfo
}

// tagOf builds a whole tag; its header is what PutHeader writes, which the
// raw-header rows below check byte by byte.
func tagOf(typ uint8, ts uint32, body ...byte) []byte { return AppendTag(nil, typ, ts, body) }

// Bodies follow Adobe's FLV spec v10.1 annex E (E.4.2.1 AUDIODATA, E.4.3.1
// VIDEODATA, E.4.4 SCRIPTDATA) and, for FourCC headers, Veovera's enhanced
// RTMP v1 (ExVideoTagHeader); HEVC under codec id 12 is the pre-enhanced
// extension Chinese CDNs and ffmpeg forks use. Each is written by hand from
// those layouts, trimmed to the bytes the parsers read.
var tagCases = []tagCase{
	// SCRIPTDATA: AMF0 string "onMetaData", then an ECMA array of 0 entries.
	{name: "onMetaData", tag: tagOf(TypeScript, 0, 0x02, 0x00, 0x0a, 'o', 'n', 'M', 'e', 't', 'a', 'D', 'a', 't', 'a', 0x08, 0, 0, 0, 0),
		hdr: Header{Type: TypeScript, DataSize: 18}, init: InitMetadata},
	{name: "other script", tag: tagOf(TypeScript, 0, 2, 0, 4, 'o', 'n', 'X', 'Y'),
		hdr: Header{Type: TypeScript, DataSize: 7}},

	// VIDEODATA 0x17: frame type 1 (key), codec 7 (AVC); AVCPacketType; CTS (SI24).
	{name: "avc sequence header", tag: tagOf(TypeVideo, 0, 0x17, 0, 0, 0, 0, 1),
		hdr: Header{Type: TypeVideo, DataSize: 6}, init: InitVideo,
		video: &VideoInfo{FrameType: FrameKey, Codec: CodecAVC, PacketType: AVCSequenceHeader}},
	{name: "avc keyframe", tag: tagOf(TypeVideo, 40, 0x17, 1, 0, 0, 0x50, 0),
		hdr: Header{Type: TypeVideo, DataSize: 6, Timestamp: 40}, key: true,
		video: &VideoInfo{FrameType: FrameKey, Codec: CodecAVC, PacketType: AVCNALU, CTS: 80}},
	// A B-frame shown before it is decoded: CTS -40 as SI24 0xffffd8.
	{name: "avc inter frame, negative cts", tag: tagOf(TypeVideo, 80, 0x27, 1, 0xff, 0xff, 0xd8, 0),
		hdr:   Header{Type: TypeVideo, DataSize: 6, Timestamp: 80},
		video: &VideoInfo{FrameType: FrameInter, Codec: CodecAVC, PacketType: AVCNALU, CTS: -40}},
	// End of sequence carries the keyframe flag but no picture.
	{name: "avc end of sequence", tag: tagOf(TypeVideo, 120, 0x17, 2, 0, 0, 0),
		hdr:   Header{Type: TypeVideo, DataSize: 5, Timestamp: 120},
		video: &VideoInfo{FrameType: FrameKey, Codec: CodecAVC, PacketType: AVCEndOfSequence}},
	{name: "avc keyframe, unknown packet type", tag: tagOf(TypeVideo, 0, 0x17, 3, 0, 0, 0),
		hdr: Header{Type: TypeVideo, DataSize: 5}},
	{name: "avc keyframe cut short", tag: tagOf(TypeVideo, 0, 0x17, 1, 0),
		hdr: Header{Type: TypeVideo, DataSize: 3}},
	{name: "hevc sequence header", tag: tagOf(TypeVideo, 0, 0x1c, 0, 0, 0, 0),
		hdr: Header{Type: TypeVideo, DataSize: 5}, init: InitVideo},
	{name: "hevc keyframe", tag: tagOf(TypeVideo, 0, 0x1c, 1, 0, 0, 0, 0),
		hdr: Header{Type: TypeVideo, DataSize: 6}, key: true},
	// ExVideoTagHeader: IsExHeader bit, frame type 1, VideoPacketType
	// (0 SequenceStart, 1 CodedFrames, 2 SequenceEnd), FourCC.
	{name: "enhanced hvc1 sequence start", tag: tagOf(TypeVideo, 0, 0x90, 'h', 'v', 'c', '1'),
		hdr: Header{Type: TypeVideo, DataSize: 5}, init: InitVideo,
		video: &VideoInfo{FrameType: FrameKey, Codec: CodecHEVC, PacketType: AVCSequenceHeader, Enhanced: true}},
	{name: "enhanced hvc1 keyframe", tag: tagOf(TypeVideo, 0, 0x91, 'h', 'v', 'c', '1', 0, 0, 0),
		hdr: Header{Type: TypeVideo, DataSize: 8}, key: true,
		video: &VideoInfo{FrameType: FrameKey, Codec: CodecHEVC, PacketType: AVCNALU, Enhanced: true}},
	{name: "enhanced hvc1 inter frame", tag: tagOf(TypeVideo, 0, 0xa1, 'h', 'v', 'c', '1', 0, 0, 0),
		hdr: Header{Type: TypeVideo, DataSize: 8}},
	{name: "enhanced hvc1 sequence end", tag: tagOf(TypeVideo, 0, 0x92, 'h', 'v', 'c', '1'),
		hdr: Header{Type: TypeVideo, DataSize: 5}},
	{name: "enhanced hvc1 keyframe cut short", tag: tagOf(TypeVideo, 0, 0x91, 'h', 'v'),
		hdr: Header{Type: TypeVideo, DataSize: 3}},
	// Sorenson H.263 (codec 2) has no packet type: every keyframe is a picture.
	{name: "sorenson keyframe", tag: tagOf(TypeVideo, 0, 0x12, 0),
		hdr: Header{Type: TypeVideo, DataSize: 2}, key: true,
		video: &VideoInfo{FrameType: FrameKey, Codec: 2, PacketType: AVCNALU}},
	{name: "sorenson inter frame", tag: tagOf(TypeVideo, 0, 0x22, 0),
		hdr: Header{Type: TypeVideo, DataSize: 2}},
	{name: "empty video", tag: tagOf(TypeVideo, 0),
		hdr: Header{Type: TypeVideo}},

	// AUDIODATA 0xaf: sound format 10 (AAC), 44 kHz, 16 bit, stereo; then
	// AACPacketType. 0x12 0x10 is AudioSpecificConfig AAC-LC 44.1 kHz stereo.
	{name: "aac sequence header", tag: tagOf(TypeAudio, 0, 0xaf, 0, 0x12, 0x10),
		hdr: Header{Type: TypeAudio, DataSize: 4}, init: InitAudio,
		audio: &AudioInfo{Codec: SoundAAC, PacketType: AACSequenceHeader}},
	{name: "aac raw", tag: tagOf(TypeAudio, 23, 0xaf, 1, 0x21),
		hdr:   Header{Type: TypeAudio, DataSize: 3, Timestamp: 23},
		audio: &AudioInfo{Codec: SoundAAC, PacketType: AACRaw}},
	{name: "aac cut short", tag: tagOf(TypeAudio, 0, 0xaf),
		hdr: Header{Type: TypeAudio, DataSize: 1}},
	// Sound format 2 (MP3) has no packet type.
	{name: "mp3", tag: tagOf(TypeAudio, 0, 0x2f, 0xff),
		hdr:   Header{Type: TypeAudio, DataSize: 2},
		audio: &AudioInfo{Codec: 2, PacketType: AACRaw}},

	// Raw headers (spec E.4.1 FLVTAG): type, UI24 size, UI24 timestamp,
	// UI8 extended timestamp (the high byte), UI24 stream id.
	{name: "extended timestamp", tag: []byte{9, 0, 0, 2, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0x12, 0},
		hdr: Header{Type: TypeVideo, DataSize: 2, Timestamp: 0x7fffffff}, key: true},
	{name: "stream id set", tag: []byte{8, 0, 0, 1, 0, 0, 1, 0, 0x01, 0x02, 0x03, 0x2f},
		hdr: Header{Type: TypeAudio, DataSize: 1, Timestamp: 1, StreamID: 0x010203}},
	// The two reserved bits and the filter (encryption) bit sit above the type.
	{name: "filter bit above the type", tag: []byte{0xe8, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x2f},
		hdr: Header{Type: TypeAudio, DataSize: 1}},
	{name: "header cut short", tag: []byte{9, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		err: ErrShort},
	{name: "size beyond the tag", tag: []byte{9, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0x17, 1, 0},
		hdr: Header{Type: TypeVideo, DataSize: 10}, err: ErrSize},
	{name: "size short of the tag", tag: []byte{8, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x2f, 0xff},
		hdr: Header{Type: TypeAudio, DataSize: 1}, err: ErrSize},
	{name: "body over the cap", tag: tagOf(TypeVideo, 0, 0x17, 1, 0, 0, 0, 0, 0, 0, 0), maxBody: 8,
		hdr: Header{Type: TypeVideo, DataSize: 9}, err: ErrTooLarge, key: true},
	// The largest size the UI24 field says, only the header received.
	{name: "largest size, header only", tag: []byte{9, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0},
		hdr: Header{Type: TypeVideo, DataSize: MaxTagSize}, err: ErrSize},
}

// whole reports a row Check accepts, which a file may hold.
func (c tagCase) whole() bool { return c.err == nil }

// file is every whole row's tag in an FLV file, as flv-file-sink writes one.
func file() []byte {
	b := FileHeader(true, true)
	for _, c := range tagCases {
		if c.whole() {
			b = append(b, c.tag...)
			b = AppendPreviousTagSize(b, len(c.tag))
		}
	}
	return b
}
