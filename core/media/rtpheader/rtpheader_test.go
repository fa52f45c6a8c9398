package rtpheader

import (
	"bytes"
	"errors"
	"testing"

	"github.com/pion/rtp"
)

func TestCheckAndParse(t *testing.T) {
	for _, c := range headerCases {
		t.Run(c.name, func(t *testing.T) {
			start, end, err := Check(c.pkt)
			if !errors.Is(err, c.err) || (c.err == nil) != (err == nil) {
				t.Fatalf("Check err = %v, want %v", err, c.err)
			}
			h, payload, perr := Parse(c.pkt)
			if perr != err {
				t.Fatalf("Parse err = %v, Check err = %v", perr, err)
			}
			if err != nil {
				return
			}
			if start != c.start || end != c.end {
				t.Errorf("payload [%d:%d], want [%d:%d]", start, end, c.start, c.end)
			}
			if h != c.h || !bytes.Equal(payload, c.pkt[c.start:c.end]) {
				t.Fatalf("Parse = %+v %q, want %+v", h, payload, c.h)
			}
			if Seq(c.pkt) != h.Seq || SSRC(c.pkt) != h.SSRC || Timestamp(c.pkt) != h.Timestamp ||
				PayloadType(c.pkt) != h.PayloadType || Marker(c.pkt) != h.Marker || Version(c.pkt) != 2 {
				t.Errorf("field readers disagree with Parse")
			}
			// pion is the reference parser: where it reads the packet, it
			// must read the same payload.
			var p rtp.Packet
			if err := p.Unmarshal(c.pkt); err != nil || !bytes.Equal(p.Payload, payload) {
				t.Fatalf("pion reads %q (%v)", p.Payload, err)
			}
		})
	}
}

// The length errors are all "shorter than its header says".
func TestLengthErrorsAreShort(t *testing.T) {
	for _, err := range []error{ErrCSRC, ErrExtension} {
		if !errors.Is(err, ErrShort) {
			t.Errorf("%v is not ErrShort", err)
		}
	}
	if errors.Is(ErrPadding, ErrShort) || errors.Is(ErrVersion, ErrShort) {
		t.Error("padding or version error reads as ErrShort")
	}
}

// Put writes what pion's Header.MarshalTo writes, byte for byte, and what
// Parse reads back.
func TestPutMatchesPion(t *testing.T) {
	for _, c := range headerCases {
		if c.err != nil {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			got := make([]byte, Size)
			Put(got, c.h)
			want := make([]byte, Size)
			ph := rtp.Header{Version: 2, Marker: c.h.Marker, PayloadType: c.h.PayloadType, SequenceNumber: c.h.Seq, Timestamp: c.h.Timestamp, SSRC: c.h.SSRC}
			if _, err := ph.MarshalTo(want); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("Put % x, pion % x", got, want)
			}
			if h, _, err := Parse(got); err != nil || h != c.h {
				t.Fatalf("Parse(Put) = %+v %v, want %+v", h, err, c.h)
			}
		})
	}
}

func TestPutMasksPayloadType(t *testing.T) {
	b := make([]byte, Size)
	Put(b, Header{PayloadType: 0xff})
	if b[1] != 0x7f {
		t.Fatalf("second byte %#x: a payload type over 127 set the marker", b[1])
	}
}
