package repairwire

import (
	"encoding/binary"
	"fmt"

	"github.com/pion/rtcp"
)

// FrameReport (edge → cloud) carries one stream's receiver report. It goes on
// a stream of its own and gets no reply: a cloud that predates it resets
// that stream (unknown type), and the edge then stops reporting on the
// connection, so old peers on either side keep repairing.
const FrameReport FrameType = 0x30

// ReportSize is a REPORT payload's size: an RTCP receiver report with one
// report block (32 bytes) and the edge's own figures (24 bytes).
const ReportSize = rrSize + edgeSize

const (
	rrSize   = 8 + 24
	edgeSize = 24
)

// Report is one stream's figures as an edge sees them.
type Report struct {
	// RR is the RFC 3550 report block on the stream's SSRC: fraction
	// lost, cumulative lost, extended highest sequence, jitter (in RTP
	// timestamp units, here milliseconds), LSR and DLSR.
	RR rtcp.ReceptionReport
	// What only the edge knows, cumulative since the stream's start.
	Repaired   uint32 // packets recovered from the cloud in time
	Skipped    uint32 // packets given up on
	WaitMeanUS uint32 // mean repair wait (gap found → repaired) since the last report, µs
	WaitMaxUS  uint32 // longest repair wait since the last report, µs
	Delivered  uint64 // bytes per second delivered downstream
}

// AppendReport appends a REPORT frame. The RTCP part is a receiver report
// from SSRC 0 (an edge has none of its own) with r.RR as its one block.
func AppendReport(dst []byte, r Report) ([]byte, error) {
	rr := rtcp.ReceiverReport{Reports: []rtcp.ReceptionReport{r.RR}}
	b, err := rr.Marshal()
	if err != nil {
		return dst, fmt.Errorf("repairwire: report: %w", err)
	}
	dst = AppendFrameHeader(dst, FrameReport, ReportSize)
	dst = append(dst, b...)
	dst = binary.BigEndian.AppendUint32(dst, r.Repaired)
	dst = binary.BigEndian.AppendUint32(dst, r.Skipped)
	dst = binary.BigEndian.AppendUint32(dst, r.WaitMeanUS)
	dst = binary.BigEndian.AppendUint32(dst, r.WaitMaxUS)
	return binary.BigEndian.AppendUint64(dst, r.Delivered), nil
}

// ParseReport parses a REPORT payload: exactly one receiver report with one
// block, then the edge's figures, and nothing else.
func ParseReport(b []byte) (Report, error) {
	// The RTCP header is fixed: V=2, no padding, one block, type RR (201),
	// length 7 words. pion checks the type, not the length or padding.
	if len(b) != ReportSize || b[0] != 0x81 || b[1] != 201 || b[2] != 0 || b[3] != 7 {
		return Report{}, ErrMalformed
	}
	var rr rtcp.ReceiverReport
	if err := rr.Unmarshal(b[:rrSize]); err != nil || len(rr.Reports) != 1 ||
		len(rr.ProfileExtensions) != 0 || rr.SSRC != 0 {
		return Report{}, ErrMalformed
	}
	e := b[rrSize:]
	r := Report{
		RR:         rr.Reports[0],
		Repaired:   binary.BigEndian.Uint32(e),
		Skipped:    binary.BigEndian.Uint32(e[4:]),
		WaitMeanUS: binary.BigEndian.Uint32(e[8:]),
		WaitMaxUS:  binary.BigEndian.Uint32(e[12:]),
		Delivered:  binary.BigEndian.Uint64(e[16:]),
	}
	// Cumulative lost is 24 bits on the wire (RFC 3550 §6.4.1).
	if r.RR.TotalLost > 0xffffff {
		return Report{}, ErrMalformed
	}
	return r, nil
}
