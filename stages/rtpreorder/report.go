package rtpreorder

import (
	"errors"
	"time"

	"github.com/pion/rtcp"

	"github.com/mediapipe/mediapipe/core/media/repairwire"
	"github.com/mediapipe/mediapipe/internal/repair"
)

// ReportInterval is how often an edge reports each stream to its cloud.
const ReportInterval = time.Second

// rrStats are one SSRC's receiver-report figures (RFC 3550 §6.4.1, A.1,
// A.8), kept on Run's goroutine as packets arrive: only packets that came
// by themselves count as received (not repairs, not those fec-decoder
// rebuilt, not duplicates), so the loss is the path's, before FEC and
// repair.
type rrStats struct {
	started          bool
	base             uint32 // extended sequence number of the first packet
	maxSeq           uint16
	cycles           uint32 // sequence wraps × 2^16
	received         uint64
	expectedPrior    uint64
	receivedPrior    uint64
	lastIngest       int64 // UnixNano
	lastTS           uint32
	jitterUS         float64 // RFC 3550's J, in µs
	bytes, bytesPrev uint64  // passed on: received or repaired
	reportedAt       time.Time
	// Repair waits since the last report: gap found → repaired.
	waitSum time.Duration
	waitN   int
	waitMax time.Duration
}

// maxDropout is RFC 3550 A.1's: a jump further ahead restarts the count.
const maxDropout = 3000

// arrive counts one packet that came by itself (not a repair), which
// entered the process at ingest (UnixNano, the source's receive time; 0:
// unknown, no jitter sample). No clock is read here: this is the per-packet
// path.
func (r *rrStats) arrive(seq uint16, ts uint32, size int, ingest int64) {
	r.bytes += uint64(size)
	if !r.started {
		*r = rrStats{started: true, base: uint32(seq), maxSeq: seq, received: 1, lastIngest: ingest, lastTS: ts,
			bytes: r.bytes, bytesPrev: r.bytesPrev, reportedAt: r.reportedAt}
		return
	}
	switch d := seq - r.maxSeq; {
	case d == 0:
		return // a duplicate
	case d < maxDropout:
		if seq < r.maxSeq {
			r.cycles += 1 << 16
		}
		r.maxSeq = seq
	case d <= 0xffff-100:
		// A jump: the sender restarted its numbering. Count afresh.
		keep := *r
		*r = rrStats{started: true, base: uint32(seq), maxSeq: seq, lastIngest: ingest, lastTS: ts,
			bytes: keep.bytes, bytesPrev: keep.bytesPrev, reportedAt: keep.reportedAt, jitterUS: keep.jitterUS}
	default:
		// Reordered: late but received.
	}
	r.received++
	// Interarrival jitter (A.8); the RTP clock is in milliseconds. The
	// fragments of one tag share a timestamp and leave together.
	if ingest != 0 && r.lastIngest != 0 {
		d := (ingest-r.lastIngest)/1000 - int64(int32(ts-r.lastTS))*1000
		if d < 0 {
			d = -d
		}
		r.jitterUS += (float64(d) - r.jitterUS) / 16
	}
	r.lastIngest, r.lastTS = ingest, ts
}

// rebuilt counts a packet fec-decoder rebuilt: delivered, but not
// received (it stays lost in the figures), and no jitter sample.
func (r *rrStats) rebuilt(size int) { r.bytes += uint64(size) }

// repaired counts a repaired packet and how long its gap waited.
func (r *rrStats) repaired(size int, wait time.Duration) {
	r.bytes += uint64(size)
	if wait > 0 {
		r.waitSum += wait
		r.waitN++
		r.waitMax = max(r.waitMax, wait)
	}
}

// report makes the report of the interval since the last one and starts
// the next interval.
func (r *rrStats) report(b *buffer, now time.Time) repairwire.Report {
	ext := r.cycles + uint32(r.maxSeq)
	expected := uint64(ext-r.base) + 1
	lost := int64(expected) - int64(r.received)
	lost = min(max(lost, 0), 0x7fffff)
	expInt := expected - r.expectedPrior
	recInt := r.received - r.receivedPrior
	r.expectedPrior, r.receivedPrior = expected, r.received
	var fraction uint8
	if lostInt := int64(expInt) - int64(recInt); expInt > 0 && lostInt > 0 {
		fraction = uint8(min(lostInt<<8/int64(expInt), 255))
	}
	rr := rtcp.ReceptionReport{SSRC: b.ssrc, FractionLost: fraction, TotalLost: uint32(lost),
		LastSequenceNumber: ext, Jitter: uint32(r.jitterUS / 1000)}
	if c := b.stream.SenderClock(); c != nil && c.SSRC == b.ssrc && c.NTP != 0 {
		rr.LastSenderReport = uint32(c.NTP >> 16)
		if d := now.Sub(c.Arrived); d > 0 {
			rr.Delay = uint32(min(d*65536/time.Second, 0xffffffff))
		}
	}
	rep := repairwire.Report{RR: rr, Repaired: uint32(b.loss.Repaired.Load()), Skipped: uint32(b.loss.Skipped.Load())}
	if r.waitN > 0 {
		rep.WaitMeanUS = uint32(min((r.waitSum / time.Duration(r.waitN)).Microseconds(), 0xffffffff))
		rep.WaitMaxUS = uint32(min(r.waitMax.Microseconds(), 0xffffffff))
	}
	// The first interval runs from when the SSRC was first reported on:
	// no clock is read per packet.
	if el := now.Sub(r.reportedAt); !r.reportedAt.IsZero() && el > 0 {
		rep.Delivered = uint64(float64(r.bytes-r.bytesPrev) / el.Seconds())
	}
	r.bytesPrev, r.reportedAt = r.bytes, now
	r.waitSum, r.waitN, r.waitMax = 0, 0, 0
	return rep
}

// sendReports reports every stream to the cloud that serves its SSRC.
func (s *Stage) sendReports() {
	if s.client == nil {
		return
	}
	now := s.env.Clock.Now()
	for _, b := range s.streams {
		if !b.started || !b.rr.started {
			continue
		}
		rep := b.rr.report(b, now)
		switch err := s.client.Report(b.ssrc, rep); {
		case err == nil:
			s.reportsSent.Inc()
		case errors.Is(err, repair.ErrNoReports), errors.Is(err, repair.ErrNotConnected), errors.Is(err, errNoOwner),
			errors.Is(err, repair.ErrUnknownSSRC):
			// An older cloud, no connection, or no cloud has said it
			// sends the SSRC (yet): nothing to report to.
		default:
			s.reportsUnsent.Inc()
		}
	}
}
