package rtpheader

import (
	"bytes"
	"testing"

	"github.com/pion/rtp"
)

// FuzzParse checks that Check's bounds stay inside the packet, that Parse
// agrees with Check, and that Parse reads what pion/rtp reads where both
// accept a packet.
func FuzzParse(f *testing.F) {
	for _, c := range headerCases {
		f.Add(c.pkt)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		start, end, err := Check(pkt)
		if err == nil && (start < Size || start > end || end > len(pkt)) {
			t.Fatalf("payload [%d:%d] of %d bytes", start, end, len(pkt))
		}
		h, payload, perr := Parse(pkt)
		if perr != err || (err == nil && !bytes.Equal(payload, pkt[start:end])) {
			t.Fatalf("Parse %v %x, Check %v [%d:%d]", perr, payload, err, start, end)
		}
		var p rtp.Packet
		if err != nil || p.Unmarshal(pkt) != nil {
			return
		}
		if h.Marker != p.Marker || h.PayloadType != p.PayloadType || h.Seq != p.SequenceNumber ||
			h.Timestamp != p.Timestamp || h.SSRC != p.SSRC || !bytes.Equal(payload, p.Payload) {
			t.Fatalf("Parse %+v %x, pion %+v %x", h, payload, p.Header, p.Payload)
		}
	})
}

// FuzzPut checks Put against pion's writer and Parse for any header.
func FuzzPut(f *testing.F) {
	for _, c := range headerCases {
		if c.err == nil {
			f.Add(c.h.Marker, c.h.PayloadType, c.h.Seq, c.h.Timestamp, c.h.SSRC)
		}
	}
	f.Fuzz(func(t *testing.T, marker bool, pt uint8, seq uint16, ts, ssrc uint32) {
		h := Header{Marker: marker, PayloadType: pt & 0x7f, Seq: seq, Timestamp: ts, SSRC: ssrc}
		got := make([]byte, Size)
		Put(got, h)
		want := make([]byte, Size)
		ph := rtp.Header{Version: 2, Marker: marker, PayloadType: h.PayloadType, SequenceNumber: seq, Timestamp: ts, SSRC: ssrc}
		if _, err := ph.MarshalTo(want); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("Put % x, pion % x", got, want)
		}
		if back, _, err := Parse(got); err != nil || back != h {
			t.Fatalf("Parse(Put) = %+v %v, want %+v", back, err, h)
		}
	})
}
