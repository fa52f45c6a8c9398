package rtpreorder

import (
	"context"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/rtpheader"
)

// slot states
const (
	slotEmpty    uint8 = iota
	slotHeld           // packet waiting for the ones before it
	slotMissing        // gap: asked for, waiting
	slotGone           // gap the cloud no longer has: skip when it reaches the head
	slotReleased       // emitted (a copy arriving now is a duplicate)
	slotSkipped        // given up (a copy arriving now is late)
)

// Why a missing slot has no repair yet: what its last ask came to.
const (
	whyAsked       uint8 = iota // asked (or not yet): waiting for the answer
	whyRefused                  // refused by the cloud's rate limit
	whyUnavailable              // not sent: not connected, or the stream was busy
	whyUnknown                  // not sent: the cloud does not know the SSRC
	whyVetting                  // held until the cloud says it knows the SSRC: an ask under way
	whyFEC                      // not asked yet: fec-decoder may rebuild it (asked at retryAt)
)

type rslot struct {
	ext   int64 // extended sequence number this slot describes
	state uint8
	why   uint8 // slotMissing: whyAsked, whyRefused, …
	probe bool  // asked past the last packet seen: may never have existed
	// slotMissing: the latency the gap was found with, in µs (it fits the
	// padding here): a reload may change latency while the gap waits.
	latUS    int32
	pkt      *core.Packet
	deadline time.Time     // slotMissing: when the gap is skipped
	extra    time.Duration // slotMissing: how much of its wait is past latency
	retryAt  time.Time     // slotMissing: when to ask again
	// slotMissing: when the ask being answered was sent (zero: not
	// sent); kept once skipped, so a late repair still measures the
	// round trip.
	askedAt time.Time
}

// emit sends the held packet on; a copy arriving later is a duplicate.
func (sl *rslot) emit(out core.Output) {
	out.Emit(sl.pkt)
	sl.pkt, sl.state = nil, slotReleased
}

// counter is the part of a metric a buffer counts on.
type counter interface{ Inc() }

// bufferEnv is what a buffer needs from the stage that owns it: the clock,
// the timing of repairs, and where its events go. The stage builds one and
// its buffers share it, so a buffer runs (and is tested) alone.
type bufferEnv struct {
	now     func() time.Time
	latency time.Duration        // how long a gap waits for repair while repairs are fast
	wait    func() time.Duration // how long a new gap waits (≥ latency); nil: latency
	// maxWait bounds how long a gap whose ask is still unanswered may wait
	// on past its deadline (0: it may not).
	maxWait time.Duration
	retry   func() time.Duration // wait before asking for a gap again; 0: nothing repairs, gaps are not asked for
	// rto is how long an ask may take to be answered (the repair round
	// trip's timeout); a gap held for FEC is asked by its wait minus rto
	// at the latest. nil: not bounded (tests of the hold alone).
	rto         func() time.Duration
	wake        func(at time.Time)    // the buffer wants service at at
	nack        func(b *buffer)       // b has NACKs pending; called once until b.dirty is cleared
	repairDelay func(d time.Duration) // one gap took d from its NACK to its repair

	gapSkipped, duplicate, late, overflow, repaired counter
	rebuilt                                         counter // packets fec-decoder rebuilt
	// Skipped gaps by their last ask; repairs that came after latency.
	refused, unavailable, repairLate counter
}

// initialSlots is a new stream's ring; it doubles as the window needs, up
// to max_packets, so a stream that reorders little (or one a stranger made)
// costs a few KB rather than max_packets × ~100 B.
const initialSlots = 64

// buffer is one stream's reorder window. Sequence numbers are unwrapped to
// a 64-bit counter (ext) relative to the newest packet; [next, end) is the
// window of packets not yet released, held in slots[ext % len(slots)].
type buffer struct {
	env     *bufferEnv
	stream  *core.Stream
	ssrc    uint32
	pt      uint8 // the SSRC's payload type
	started bool  // an SSRC is set
	fresh   bool  // no packet of this SSRC yet
	// fromStart: the first packet of this SSRC opens the stream, so there
	// is nothing before it to probe for.
	fromStart bool
	next      int64
	end       int64
	slots     []rslot
	max       int64 // the window's bound (max_packets); len(slots) grows to it
	missing   int   // slots in the window that are slotMissing or slotGone

	nextEvent time.Time // earliest deadline or retry among missing slots
	// answered is the latest ask answered (repair, gone or refused): the
	// cloud answers one SSRC's NACKs in order, so an ask sent after it is
	// still on its way, and one sent before it that has no repair never
	// will.
	answered  time.Time
	pending   []uint16 // gaps found since the last flush, to NACK
	dirty     bool     // given to env.nack, not yet cleared
	stopInit  context.CancelFunc
	initAsked bool         // its init fetch has run or is queued (once per buffer)
	endPkt    *core.Packet // the stream's end, held while gaps are open
	loss      *core.StreamLoss
	rr        rrStats // the receiver report's figures
	// Gaps whose ask waits for FEC lie before heldEnd (0: none); fecFrom
	// is the last FECHint.From seen, so they are looked at once per group.
	heldEnd int64
	fecFrom uint16
}

func newBuffer(env *bufferEnv, st *core.Stream, size int) *buffer {
	return &buffer{env: env, stream: st, slots: make([]rslot, min(initialSlots, size)), max: int64(size), pending: make([]uint16, 0, 64),
		loss: new(core.StreamLoss)}
}

func (b *buffer) slot(ext int64) *rslot { return &b.slots[ext%int64(len(b.slots))] }

// gapSlot returns seq's slot when seq is a gap still in the window, else nil.
func (b *buffer) gapSlot(seq uint16) *rslot {
	ext := b.unwrap(seq)
	if ext < b.next || ext >= b.end {
		return nil
	}
	if sl := b.slot(ext); sl.ext == ext && sl.state == slotMissing {
		return sl
	}
	return nil
}

// fit grows the ring, doubling up to max, until the window [next, last]
// fits in it; the caller keeps last-next < max.
func (b *buffer) fit(last int64) {
	n := int64(len(b.slots))
	need := last - b.next + 1
	if need <= n {
		return
	}
	size := n
	for size < need {
		size *= 2
	}
	size = min(size, b.max)
	slots := make([]rslot, size)
	// Every slot worth keeping describes one of the n sequence numbers
	// before end (nothing at or past end is placed yet): the window, and
	// the released ones before it that tell a duplicate from a late
	// packet. n consecutive numbers land in distinct slots of any larger
	// ring.
	for e := max(b.end-n, 0); e < b.end; e++ {
		if sl := &b.slots[e%n]; sl.ext == e && sl.state != slotEmpty {
			slots[e%size] = *sl
		}
	}
	b.slots = slots
}

func (b *buffer) unwrap(seq uint16) int64 {
	ref := b.end - 1
	return ref + int64(int16(seq-uint16(ref)))
}

// reset starts the window over for ssrc. The caller has flushed it.
func (b *buffer) reset(ssrc uint32) {
	b.ssrc, b.started, b.fresh, b.fromStart = ssrc, true, true, false
	b.rr = rrStats{}
	b.missing, b.nextEvent, b.pending, b.answered = 0, time.Time{}, b.pending[:0], time.Time{}
	b.heldEnd = 0
	clear(b.slots)
}

func (b *buffer) noteEvent(t time.Time) {
	if b.nextEvent.IsZero() || t.Before(b.nextEvent) {
		b.nextEvent = t
	}
}

// insert places packet p (sequence number seq) and releases what is in order.
func (b *buffer) insert(p *core.Packet, seq uint16, repair bool, out core.Output) {
	fec := p.FEC // p may be gone (emitted) before the gaps it reveals are marked
	if fec.On && b.heldEnd > b.next && fec.From != b.fecFrom {
		b.pastFEC(fec.From)
	}
	if fec.On {
		b.fecFrom = fec.From
	}
	probe := false
	if b.fresh {
		// Start high enough that a reordered packet from before the first
		// one never makes ext negative.
		b.next = int64(seq) + 1<<16
		if !repair && !b.fromStart && b.env.retry() > 0 {
			// The first packets of a stream may be lost too, leaving no
			// gap: ask for the few before the first one seen. The cloud
			// says gone for those the stream never had (dropped
			// uncounted); a late joiner gets a few packets of backlog.
			b.next -= headProbes
			probe = true
		}
		b.end = b.next
		b.fresh = false
	}
	ext := b.unwrap(seq)
	size := b.max

	if ext < b.next {
		sl := b.slot(ext)
		if sl.ext == ext && sl.state == slotReleased {
			b.env.duplicate.Inc()
		} else {
			b.arrived(p, seq, repair) // too late for viewers, but it came
			b.env.late.Inc()
			if repair && sl.ext == ext && sl.state == slotSkipped && !sl.askedAt.IsZero() {
				// Too late, but it tells how long a repair takes.
				b.env.repairDelay(b.env.now().Sub(sl.askedAt))
				sl.askedAt = time.Time{}
			}
		}
		p.Release()
		return
	}
	if ext < b.end {
		sl := b.slot(ext)
		if sl.ext != ext || (sl.state != slotMissing && sl.state != slotGone) {
			b.env.duplicate.Inc()
			p.Release()
			return
		}
		b.arrived(p, seq, repair)
		b.answer(sl)
		sl.state, sl.pkt = slotHeld, p
		b.missing--
		if repair {
			b.env.repaired.Inc()
			b.loss.Repaired.Add(1)
			now := b.env.now()
			lat := time.Duration(sl.latUS) * time.Microsecond
			b.rr.repaired(len(p.Data), now.Sub(sl.deadline.Add(-(lat + sl.extra))))
			if sl.extra > 0 && now.After(sl.deadline.Add(-sl.extra)) {
				b.env.repairLate.Inc()
			}
			if !sl.askedAt.IsZero() {
				b.env.repairDelay(now.Sub(sl.askedAt))
			}
		}
		if ext == b.next {
			b.release(out)
		}
		return
	}

	// A new packet ahead of everything seen.
	b.arrived(p, seq, repair)
	if ext == b.end && b.next == b.end {
		// The no-loss path: nothing held, emit at once.
		sl := b.slot(ext)
		sl.ext, sl.state, sl.pkt = ext, slotReleased, nil
		b.next, b.end = ext+1, ext+1
		out.Emit(p)
		return
	}
	if ext >= b.end+size {
		// Further ahead than the whole window: an outage or a jump in
		// numbering. Release what is held and start from here.
		b.flush(out)
		b.next, b.end = ext, ext
	}
	for ext >= b.next+size {
		b.forceHead(out)
	}
	b.fit(ext)
	if ext > b.end {
		b.markMissing(b.end, ext, probe, fec)
	}
	sl := b.slot(ext)
	sl.ext, sl.state, sl.pkt = ext, slotHeld, p
	b.end = ext + 1
	if b.next == ext {
		b.release(out)
	}
}

// arrived counts p, found not to be a duplicate, in the receiver report:
// a packet that came by itself as received; one fec-decoder rebuilt as lost
// (it is counted apart), so the loss an edge reports is the path's, before
// FEC and repair, and a controller sees what its parity has to cover. A
// repair is counted where it fills its gap, with its wait.
func (b *buffer) arrived(p *core.Packet, seq uint16, repair bool) {
	switch {
	case repair:
	case p.Rebuilt:
		b.rr.rebuilt(len(p.Data))
		b.env.rebuilt.Inc()
	case len(p.Data) >= rtpheader.Size:
		b.rr.arrive(seq, rtpheader.Timestamp(p.Data), len(p.Data), p.Ingest)
	}
}

// release emits held packets from the head, skipping gaps the cloud said
// are gone, until the first gap still worth waiting for.
func (b *buffer) release(out core.Output) {
	for b.next < b.end {
		sl := b.slot(b.next)
		switch sl.state {
		case slotHeld:
			sl.emit(out)
		case slotGone:
			b.skip(sl)
		default:
			return
		}
		b.next++
	}
}

// skip gives up a missing or gone slot; a probe that came to nothing is
// no loss and is not counted.
func (b *buffer) skip(sl *rslot) {
	if !sl.probe {
		b.env.gapSkipped.Inc()
		b.loss.Skipped.Add(1)
		if sl.state == slotMissing {
			switch sl.why {
			case whyRefused:
				b.env.refused.Inc()
			case whyUnavailable, whyVetting: // never asked
				b.env.unavailable.Inc()
			}
		}
	}
	sl.state = slotSkipped
	b.missing--
}

// probeTail asks for the n sequence numbers after the newest packet seen:
// at the end of a stream a lost last packet leaves no gap behind it, so it
// would be lost unseen. The cloud repairs those it sent and says gone for
// the rest, which are dropped uncounted.
func (b *buffer) probeTail(n int) {
	if b.fresh || !b.started || b.end+int64(n)-b.next > b.max {
		return
	}
	b.fit(b.end + int64(n) - 1)
	b.markMissing(b.end, b.end+int64(n), true, core.FECHint{})
	b.end += int64(n)
}

// markMissing marks [from, to) as gaps waiting for repair, asks for them
// when something repairs, and asks for service by the first deadline or
// retry among them. A probe gap may never have existed. A gap fec-decoder
// may still rebuild (fec) is asked for only once its group's parity is
// due, at most half the latency on and no later than its wait less the
// repair's round trip timeout, so a repair asked then still fits; when
// nothing is left for the hold it is asked at once.
func (b *buffer) markMissing(from, to int64, probe bool, fec core.FECHint) {
	now := b.env.now()
	wait := b.env.latency
	if b.env.wait != nil {
		wait = b.env.wait()
	}
	deadline := now.Add(wait)
	extra := max(wait-b.env.latency, 0)
	latUS := int32(b.env.latency / time.Microsecond) // latency is at most 10 s
	retry := b.env.retry()
	ev := deadline
	if retry > 0 && now.Add(retry).Before(ev) {
		ev = now.Add(retry)
	}
	hold := min(fec.Hold, b.env.latency/2)
	if fec.On && b.env.rto != nil {
		hold = min(hold, wait-b.env.rto())
	}
	for e := from; e < to; e++ {
		sl := b.slot(e)
		*sl = rslot{ext: e, state: slotMissing, deadline: deadline, extra: extra, latUS: latUS, retryAt: now.Add(retry), probe: probe}
		switch {
		case retry <= 0:
		case fec.On && !probe && hold > 0 && int16(uint16(e)-fec.From) >= 0:
			sl.why, sl.retryAt = whyFEC, now.Add(hold)
			b.heldEnd = e + 1
			if sl.retryAt.Before(ev) {
				ev = sl.retryAt
			}
		default:
			sl.askedAt = now
			b.pending = append(b.pending, uint16(e))
		}
	}
	b.missing += int(to - from)
	if !probe {
		b.loss.Lost.Add(uint64(to - from))
	}
	if len(b.pending) > 0 && !b.dirty {
		b.dirty = true
		b.env.nack(b)
	}
	b.noteEvent(ev)
	b.env.wake(b.nextEvent)
}

// pastFEC asks at once for the gaps held for FEC before from: their
// group's parity has come, and they were not rebuilt.
func (b *buffer) pastFEC(from uint16) {
	now, retry := b.env.now(), b.env.retry()
	end := min(b.heldEnd, b.end)
	held := false
	for e := b.next; e < end; e++ {
		sl := b.slot(e)
		if sl.ext != e || sl.state != slotMissing || sl.why != whyFEC {
			continue
		}
		if int16(uint16(e)-from) >= 0 {
			held = true
			continue
		}
		sl.why, sl.askedAt, sl.retryAt = whyAsked, now, now.Add(retry)
		b.pending = append(b.pending, uint16(e))
		b.noteEvent(sl.retryAt)
	}
	if !held {
		b.heldEnd = 0
	}
	if len(b.pending) > 0 && !b.dirty {
		b.dirty = true
		b.env.nack(b)
	}
}

// forceHead moves the head on by one whatever it holds: the window is full.
func (b *buffer) forceHead(out core.Output) {
	if b.next == b.end {
		b.end++
	}
	sl := b.slot(b.next)
	switch sl.state {
	case slotHeld:
		sl.emit(out)
	case slotMissing, slotGone:
		b.env.overflow.Inc()
		sl.state = slotSkipped
		b.missing--
	}
	b.next++
	b.release(out)
}

// flush releases everything held, in order, counting the gaps as skipped.
func (b *buffer) flush(out core.Output) {
	for ; b.next < b.end; b.next++ {
		sl := b.slot(b.next)
		switch sl.state {
		case slotHeld:
			sl.emit(out)
		case slotMissing, slotGone:
			b.skip(sl)
		}
	}
	b.missing, b.nextEvent, b.pending, b.heldEnd = 0, time.Time{}, b.pending[:0], 0
}

// service skips the gaps at the head whose time is up, collects the gaps
// due for another NACK into pending, and recomputes nextEvent.
func (b *buffer) service(now time.Time, retry time.Duration, out core.Output) {
	for b.next < b.end {
		sl := b.slot(b.next)
		switch {
		case sl.state == slotHeld:
			sl.emit(out)
		case sl.state == slotGone:
			b.skip(sl)
		case sl.state == slotMissing && !now.Before(sl.deadline) && !b.waitOn(sl, now):
			b.skip(sl)
		default:
			goto scan
		}
		b.next++
	}
scan:
	b.nextEvent = time.Time{}
	if b.missing == 0 {
		return
	}
	for e := b.next; e < b.end; e++ {
		sl := b.slot(e)
		if sl.state != slotMissing {
			continue
		}
		// A gap due behind a head that waits on has no event of its
		// own: it is skipped at the head, by the service the head's
		// events bring.
		var ev time.Time
		if now.Before(sl.deadline) || b.waitOn(sl, now) {
			ev = sl.deadline
		}
		if retry > 0 {
			if !sl.retryAt.After(now) {
				b.pending = append(b.pending, uint16(e))
				if sl.why == whyFEC { // FEC had its chance
					sl.why = whyAsked
				}
				sl.retryAt = now.Add(retry)
				if sl.askedAt.IsZero() {
					sl.askedAt = now
				}
			}
			if ev.IsZero() || sl.retryAt.Before(ev) {
				ev = sl.retryAt
			}
		}
		if !ev.IsZero() {
			b.noteEvent(ev)
		}
	}
}

// answer notes that the ask for sl has been answered.
func (b *buffer) answer(sl *rslot) {
	if sl.askedAt.After(b.answered) {
		b.answered = sl.askedAt
	}
}

// waitOn reports whether sl, a gap past its deadline, waits on: its ask is
// sent and unanswered (nothing asked at or after it has been answered), so
// the round trip is merely slower than the wait it was given — as for a
// burst of gaps at a stream's start, before any round trip is measured.
// It waits then up to maxWait from when it was found, and its deadline
// moves there.
func (b *buffer) waitOn(sl *rslot, now time.Time) bool {
	if b.env.maxWait <= 0 || sl.askedAt.IsZero() || !sl.askedAt.After(b.answered) {
		return false
	}
	// The gap's own latency, not today's: found stays when it was found.
	lat := time.Duration(sl.latUS) * time.Microsecond
	found := sl.deadline.Add(-(lat + sl.extra))
	limit := found.Add(b.env.maxWait)
	if !now.Before(limit) {
		return false
	}
	sl.deadline, sl.extra = limit, b.env.maxWait-lat
	return true
}

// askAll puts every gap still waiting whose last ask was not sent (held
// while the SSRC was vetted, or not sendable) into pending, to be asked
// for now, and moves their retries on. A gap asked already is not asked
// again: the client may have learnt the SSRC, and sent asks for it, before
// Run hears so.
func (b *buffer) askAll(now time.Time, retry time.Duration) {
	if retry <= 0 {
		return
	}
	b.pending = b.pending[:0]
	for e := b.next; e < b.end; e++ {
		if sl := b.slot(e); sl.ext == e && sl.state == slotMissing && sl.why != whyAsked && sl.why != whyRefused && sl.why != whyFEC {
			b.pending = append(b.pending, uint16(e))
			sl.retryAt = now.Add(retry)
			if sl.askedAt.IsZero() {
				sl.askedAt = now
			}
			b.noteEvent(sl.retryAt)
		}
	}
}

// note records what the last ask for seqs came to. An ask not sent or
// refused is no round trip: the next one sent starts the measure again.
func (b *buffer) note(seqs []uint16, why uint8) {
	if b.fresh {
		return
	}
	for _, seq := range seqs {
		if sl := b.gapSlot(seq); sl != nil {
			sl.why = why
			if why == whyRefused {
				b.answer(sl)
			}
			if why != whyAsked && why != whyVetting {
				sl.askedAt = time.Time{}
			}
		}
	}
}

// markGone marks gaps the cloud no longer has, so they are skipped as soon
// as they reach the head rather than at their deadline.
func (b *buffer) markGone(seqs []uint16, out core.Output) {
	if b.fresh {
		return
	}
	for _, seq := range seqs {
		if sl := b.gapSlot(seq); sl != nil {
			b.answer(sl)
			sl.state = slotGone
		}
	}
	b.release(out)
}
