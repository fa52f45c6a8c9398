package rtpheader

import "github.com/pion/rtp"

// headerCase is one row of the table the unit tests, the benchmarks and the
// fuzz seeds share: a datagram and what Check and Parse must say of it.
type headerCase struct {
	name       string
	pkt        []byte
	err        error
	start, end int    // payload bounds when err is nil
	h          Header // the header when err is nil
}

// base is a 12-byte header: marker, PT 100, seq 0x1234, ts 9, SSRC 0x01020304.
var base = []byte{0x80, 0xe4, 0x12, 0x34, 0, 0, 0, 9, 1, 2, 3, 4}

var baseHeader = Header{Marker: true, PayloadType: 100, Seq: 0x1234, Timestamp: 9, SSRC: 0x01020304}

// with returns base with its first byte set to b0, then tail.
func with(b0 byte, tail ...byte) []byte {
	return append(append([]byte{b0}, base[1:]...), tail...)
}

// pion marshals a packet with pion/rtp, the reference writer.
func pion(h rtp.Header, payload []byte, padding byte) []byte {
	b, err := (&rtp.Packet{Header: h, Payload: payload, PaddingSize: padding}).Marshal()
	if err != nil {
		panic(err)
	}
	return b
}

// pionExt is a header with a one-byte-profile extension, as pion writes it.
func pionExt() rtp.Header {
	h := rtp.Header{Version: 2, PayloadType: 96}
	if err := h.SetExtension(1, []byte{1, 2}); err != nil {
		panic(err)
	}
	return h
}

// mutate returns a copy of b changed by f.
func mutate(b []byte, f func(b []byte)) []byte {
	b = append([]byte(nil), b...)
	f(b)
	return b
}

var plain = pion(rtp.Header{Version: 2, PayloadType: 100, SequenceNumber: 7, Timestamp: 9, SSRC: 0xdeadbeef}, make([]byte, 100), 0)

var headerCases = []headerCase{
	{name: "plain", pkt: with(0x80, 'a', 'b'), start: 12, end: 14, h: baseHeader},
	{name: "csrc", pkt: with(0x82, 0, 0, 0, 1, 0, 0, 0, 2, 'x'), start: 20, end: 21, h: baseHeader},
	{name: "extension", pkt: with(0x90, 0xbe, 0xde, 0, 1, 1, 2, 3, 4, 'y'), start: 20, end: 21, h: baseHeader},
	{name: "padding", pkt: with(0xa0, 'z', 0, 0, 3), start: 12, end: 13, h: baseHeader},
	{name: "csrc_extension_padding", pkt: with(0xb1, 0, 0, 0, 1, 0xbe, 0xde, 0, 0, 'w', 2, 2), start: 20, end: 21, h: baseHeader},
	{name: "empty_payload", pkt: with(0x80), start: 12, end: 12, h: baseHeader},
	{name: "pion_plain", pkt: plain, start: 12, end: 112, h: Header{PayloadType: 100, Seq: 7, Timestamp: 9, SSRC: 0xdeadbeef}},
	{name: "pion_marker_pt127", pkt: pion(rtp.Header{Version: 2, Marker: true, PayloadType: 127, SequenceNumber: 0xfffe, Timestamp: 0x01020304, SSRC: 0xcafebabe}, []byte{1}, 0), start: 12, end: 13,
		h: Header{Marker: true, PayloadType: 127, Seq: 0xfffe, Timestamp: 0x01020304, SSRC: 0xcafebabe}},
	{name: "pion_two_csrc", pkt: pion(rtp.Header{Version: 2, PayloadType: 96, CSRC: []uint32{1, 2}}, []byte{1, 2, 3}, 0), start: 20, end: 23, h: Header{PayloadType: 96}},
	{name: "pion_extension", pkt: pion(pionExt(), []byte{9}, 0), start: 20, end: 21, h: Header{PayloadType: 96}},
	{name: "pion_padding", pkt: pion(rtp.Header{Version: 2, PayloadType: 96, Padding: true}, []byte{1, 2, 3}, 5), start: 12, end: 15, h: Header{PayloadType: 96}},
	// An RTCP sender report has RTP's shape; only RFC 5761 demux tells them apart.
	{name: "rtcp_sr_shape", pkt: append([]byte{0x80, 200, 0, 6, 0, 0, 0, 5}, make([]byte, 20)...), start: 12, end: 28, h: Header{Marker: true, PayloadType: 72, Seq: 6, Timestamp: 5}},

	{name: "empty", pkt: nil, err: ErrShort},
	{name: "short", pkt: base[:11], err: ErrShort},
	{name: "version1", pkt: with(0x40), err: ErrVersion},
	{name: "text", pkt: []byte("GET / HTTP/1.1\r\n\r\n"), err: ErrVersion},
	{name: "csrc_missing", pkt: with(0x8f), err: ErrCSRC},
	{name: "csrc_past_end", pkt: mutate(plain[:20], func(b []byte) { b[0] |= 0x0f }), err: ErrCSRC},
	{name: "extension_header_missing", pkt: with(0x90, 0xbe, 0xde), err: ErrExtension},
	{name: "extension_missing", pkt: with(0x90, 0xbe, 0xde, 0, 9), err: ErrExtension},
	{name: "extension_past_end", pkt: mutate(plain[:16], func(b []byte) { b[0] |= 0x10; b[14], b[15] = 0xff, 0xff }), err: ErrExtension},
	{name: "padding_too_long", pkt: with(0xa0, 'z', 9), err: ErrPadding},
	{name: "padding_zero", pkt: with(0xa0, 'z', 0), err: ErrPadding},
	{name: "padding_longer_than_payload", pkt: mutate(plain, func(b []byte) { b[0] |= 0x20; b[len(b)-1] = 200 }), err: ErrPadding},
}
