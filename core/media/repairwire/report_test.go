package repairwire

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/pion/rtcp"
)

func TestReportSurvives(t *testing.T) {
	in := Report{RR: rtcp.ReceptionReport{SSRC: 9, FractionLost: 25, TotalLost: 300, LastSequenceNumber: 70000, Jitter: 4, LastSenderReport: 1, Delay: 2},
		Repaired: 280, Skipped: 20, WaitMeanUS: 15000, WaitMaxUS: 40000, Delivered: 1 << 20}
	b, err := AppendReport(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	typ, p, err := NewFrameReader(bytes.NewReader(b), MaxRequestFrame).Next()
	if err != nil || typ != FrameReport {
		t.Fatalf("Next = %s, %v", typ, err)
	}
	out, err := ParseReport(p)
	if err != nil || !reflect.DeepEqual(in, out) {
		t.Fatalf("got %+v, %v", out, err)
	}
}

// TestReportRejectsJunk: what a peer could send instead of a report is
// refused, never half read.
func TestReportRejectsJunk(t *testing.T) {
	good := mustReport(Report{RR: rtcp.ReceptionReport{SSRC: 1}})[FrameHeaderSize:]
	sr, _ := (&rtcp.SenderReport{SSRC: 1}).Marshal()
	twoBlocks, _ := (&rtcp.ReceiverReport{Reports: []rtcp.ReceptionReport{{SSRC: 1}, {SSRC: 2}}}).Marshal()
	fromSSRC := append([]byte(nil), good...)
	fromSSRC[7] = 5 // a sender SSRC other than 0
	notRR := append([]byte(nil), good...)
	notRR[1] = 200 // an SR's packet type
	cases := map[string][]byte{
		"empty":      nil,
		"short":      good[:ReportSize-1],
		"long":       append(append([]byte(nil), good...), 0),
		"sr":         append(sr, make([]byte, ReportSize-len(sr))...),
		"two blocks": append(twoBlocks, make([]byte, ReportSize-len(twoBlocks))...)[:ReportSize],
		"sender":     fromSSRC,
		"not rr":     notRR,
		"zeros":      make([]byte, ReportSize),
	}
	for name, b := range cases {
		if _, err := ParseReport(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}
