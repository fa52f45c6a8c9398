package repairwire

import "github.com/pion/rtcp"

func mustReport(r Report) []byte {
	b, err := AppendReport(nil, r)
	if err != nil {
		panic(err)
	}
	return b
}

// frameCases are whole frames, one per frame type and edge case: they feed the
// round-trip test, BenchmarkFrames and the fuzz seeds.
var frameCases = []struct {
	name string
	wire []byte
	typ  FrameType
}{
	{"hello", AppendHello(nil, Hello{Version: 1, Token: "s3cret"}), FrameHello},
	{"hello no token", AppendHello(nil, Hello{Version: 1}), FrameHello},
	{"hello ok", AppendHelloOK(nil, HelloOK{Version: 1, CachePackets: 5000}), FrameHelloOK},
	{"nack", []byte{0x10, 0, 0, 8, 0, 0, 0, 7, 0, 10, 0x80, 0x05}, FrameNACK},
	{"nack full run", AppendFrame(nil, FrameNACK, nackCases[len(nackCases)-1].wire), FrameNACK},
	{"streams", AppendStreams(nil, []StreamInfo{{1, "live/a"}, {0xdeadbeef, "live/b"}}), FrameStreams},
	{"streams empty", AppendStreams(nil, nil), FrameStreams},
	{"init req", AppendInitReq(nil, InitReq{Name: "live/a"}), FrameInitReq},
	{"init", AppendInit(nil, Init{Status: InitFound, SSRC: 9, Name: "live/a", Tags: InitTags{Metadata: []byte{18, 1}, Video: []byte{9, 2, 3}}}), FrameInit},
	{"report", mustReport(Report{RR: rtcp.ReceptionReport{SSRC: 0xdeadbeef, FractionLost: 13, TotalLost: 0x123456, LastSequenceNumber: 0x1fffe, Jitter: 7, LastSenderReport: 0x11223344, Delay: 65536}, Repaired: 40, Skipped: 2, WaitMeanUS: 21000, WaitMaxUS: 90000, Delivered: 500000}), FrameReport},
	{"report zero", mustReport(Report{}), FrameReport},
	{"init unknown", AppendInit(nil, Init{Status: InitUnknown, Name: "x"}), FrameInit},
}

// nackCases are NACK batches: what FromSeqs makes of a set of lost sequence
// numbers and its wire form. They feed the NACK tests, benchmarks and fuzz seeds.
var nackCases = []struct {
	name    string
	ssrc    uint32
	seqs    []uint16    // missing sequence numbers, any order
	entries []NACKEntry // what FromSeqs must make of them
	wire    []byte      // AppendNACK of entries
}{
	{
		name: "single", ssrc: 0x01020304, seqs: []uint16{100},
		entries: []NACKEntry{{0x01020304, 100, 0}},
		wire:    []byte{1, 2, 3, 4, 0, 100, 0, 0},
	},
	{
		name: "pid and bitmask", ssrc: 7, seqs: []uint16{10, 11, 13, 26},
		// 11 = bit 0, 13 = bit 2, 26 = bit 15 (RFC 4585 §6.2.1)
		entries: []NACKEntry{{7, 10, 1<<0 | 1<<2 | 1<<15}},
		wire:    []byte{0, 0, 0, 7, 0, 10, 0x80, 0x05},
	},
	{
		name: "two entries", ssrc: 7, seqs: []uint16{27, 10},
		entries: []NACKEntry{{7, 10, 0}, {7, 27, 0}},
		wire:    []byte{0, 0, 0, 7, 0, 10, 0, 0, 0, 0, 0, 7, 0, 27, 0, 0},
	},
	{
		name: "across wrap", ssrc: 9, seqs: []uint16{1, 65534, 0, 65535},
		entries: []NACKEntry{{9, 65534, 0b111}},
		wire:    []byte{0, 0, 0, 9, 0xff, 0xfe, 0, 7},
	},
	{
		name: "duplicates", ssrc: 9, seqs: []uint16{5, 5, 6, 6},
		entries: []NACKEntry{{9, 5, 1}},
		wire:    []byte{0, 0, 0, 9, 0, 5, 0, 1},
	},
	{
		name: "full run", ssrc: 0xffffffff, seqs: seqRange(65530, 40),
		entries: []NACKEntry{{0xffffffff, 65530, 0xffff}, {0xffffffff, 11, 0xffff}, {0xffffffff, 28, 0x1f}},
		wire: []byte{
			0xff, 0xff, 0xff, 0xff, 0xff, 0xfa, 0xff, 0xff,
			0xff, 0xff, 0xff, 0xff, 0, 11, 0xff, 0xff,
			0xff, 0xff, 0xff, 0xff, 0, 28, 0, 0x1f,
		},
	},
}
