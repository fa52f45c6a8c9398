// Package rtpreorder is the rtp-reorder stage: a per-stream reorder buffer that
// asks the cloud's quic-retransmit for missing packets and releases in order.
package rtpreorder

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/fecparity"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/media/repairwire"
	"github.com/mediapipe/mediapipe/core/media/rtpheader"
	"github.com/mediapipe/mediapipe/internal/repair"
)

// sample is an example [[pipeline.stage]] block for this stage, carried in
// its spec; stages/all checks that it validates.
//
//go:embed sample.toml
var sample string

// Config is rtp-reorder's parameters.
type Config struct {
	Retransmit []string      `param:"retransmit" addr:"true" doc:"the cloud's quic-retransmit address (host:port), or a list of them: the primary cloud and its standbys (a standby cloud the encoder's backup URL points at sends the stream with its own SSRC once the primary is quiet). Each SSRC's repairs are asked of the cloud that says it knows that SSRC; one QUIC connection is kept to each. Empty: no repair, a gap waits latency and is skipped"`
	Token      string        `param:"token" secret:"true" live:"true" doc:"token the cloud's quic-retransmit expects. A reload's new token goes in the next HELLO (the next reconnection; at once if the cloud is refusing the old one); the connection up keeps going (the cloud checked it when it began)"`
	Latency    time.Duration `param:"latency" default:"80ms" min:"0.001" max:"10" live:"true" doc:"how long a gap waits for repair before it is skipped, while repairs come back sooner than that. A reload's new latency applies to gaps found after it; a gap already waiting keeps its deadline"`
	MaxLatency time.Duration `param:"max_latency" default:"1s" min:"0.001" max:"10" live:"true" doc:"the longest a gap may wait when repairs are slower than latency: a gap waits for the measured repair round trip (smoothed, plus 4 deviations, as TCP's timeout), and one whose NACK is still unanswered at latency waits on, both up to this bound (never below latency). A reload's new bound applies to the waits of gaps found after it, and to any gap that waits on past its deadline from then on"`
	MaxPackets int           `param:"max_packets" default:"4096" min:"16" max:"32768" doc:"reorder buffer bound per stream, in packets; a packet further ahead forces the oldest gaps to be skipped"`
	CA         string        `param:"ca" doc:"PEM CA file to verify the cloud's certificate (relative to the pipeline file's directory); empty: not verified (the token authenticates)"`
}

// Validate checks what spans fields, and an absolute ca (a relative one
// needs the pipeline file's directory: ValidateIn).
func (c *Config) Validate() error {
	if len(c.Retransmit) == 0 && c.Token != "" {
		return errors.New("token: set without retransmit")
	}
	if len(c.Token) > repairwire.MaxTokenLen {
		return fmt.Errorf("token: longer than %d bytes", repairwire.MaxTokenLen)
	}
	if filepath.IsAbs(c.CA) {
		return checkCA(c.CA)
	}
	return nil
}

// ValidateIn implements core.DirValidator: a relative ca, like every path in
// the file, starts at the pipeline file's directory.
func (c *Config) ValidateIn(dir string) error {
	if filepath.IsAbs(c.CA) {
		return nil // Validate checked it
	}
	return checkCA(core.InDir(dir, c.CA))
}

// checkCA says why path is no PEM CA file; an empty path (no verification) is fine.
func checkCA(path string) error {
	if path == "" {
		return nil
	}
	if _, err := repair.ClientTLS(path, "x"); err != nil {
		return errors.New("ca: " + err.Error())
	}
	return nil
}

func init() {
	core.Register(core.Spec{
		Name:    "rtp-reorder",
		Summary: "per-stream reorder buffer; asks the cloud's quic-retransmit for missing packets over one QUIC connection; releases in order; a gap still open after latency is skipped and counted",
		In:      core.KindRTP,
		Out:     core.KindRTP,
		Sample:  sample,
	}, New)
}

// Timing of repairs.
const (
	minRetry       = 5 * time.Millisecond  // never re-ask faster than this
	defaultRetry   = 20 * time.Millisecond // before an RTT is measured
	initAttempts   = 10                    // init-tag fetches per stream before giving up
	initPause      = 500 * time.Millisecond
	initTimeout    = 5 * time.Second
	maxInitFetches = 4    // streams fetching init tags at once; others wait their turn
	repairQueue    = 4096 // repaired packets waiting for the Run loop
	flushEvery     = 32   // input packets at most between NACK flushes
	tailProbes     = 4    // sequence numbers asked past the last packet at a stream's end
	headProbes     = 4    // sequence numbers asked before the first packet seen of a stream joined late
)

// Stage is a running rtp-reorder.
type Stage struct {
	cfg *Config
	env *core.Env

	losses core.LossSet // each stream's loss figures, for the per-stream metrics

	client *clients
	shared atomic.Pointer[clients] // client, for other goroutines

	// latency and maxLatency are Run's copies of the live parameters;
	// Reconfigure hands new ones over through live (Run takes them up
	// before the next packet or timer event, and at once when woken) and
	// the token through tokenMu, which Run holds while it dials.
	latency, maxLatency time.Duration
	live                atomic.Pointer[liveParams]
	applied             *liveParams
	reconf              chan struct{} // capacity 1: live holds new parameters
	tokenMu             sync.Mutex
	token               string
	repairs             chan *core.Packet // from the client's readers; Stream unset
	gones               chan gone
	known               chan uint32 // SSRCs the cloud has just said it knows

	benv        bufferEnv // what every buffer is built with
	streams     map[*core.Stream]*buffer
	bySSRC      map[uint32]*buffer
	dirty       []*buffer // buffers with NACKs pending
	timer       core.Timer
	reportTimer core.Timer // nil without a repair connection
	timerAt     time.Time  // zero: not armed
	sinceFlush  int
	// The NACK → repair delay, smoothed as TCP's SRTT and RTTVAR: it
	// counts time spent queued in either process, which QUIC's RTT does not.
	srtt, rttvar time.Duration

	initCtx     context.Context
	initStop    context.CancelFunc
	initWG      sync.WaitGroup
	initDone    chan *buffer // a fetch ended; capacity maxInitFetches, so it never blocks
	initRunning int
	initWait    []*buffer // streams waiting for a fetch slot, oldest first (one entry each)

	nacksSent, repaired, gonesRecv, initFetched prometheus.Counter
	nacksUnknown                                prometheus.Counter
	reportsSent, reportsUnsent                  prometheus.Counter
	repairRefused, repairUnavailable            prometheus.Counter
	repairedLate                                prometheus.Counter
	gapSkipped, duplicate, late, overflow       *core.DropCounter
	queueFull, notRTP, otherPT                  *core.DropCounter
	rttGauge, connGauge, waitGauge              prometheus.Gauge
}

// gone is a GONE reply, or (refused) a REFUSED one: over the cloud's rate limit.
type gone struct {
	ssrc    uint32
	seqs    []uint16
	refused bool
}

// liveParams are the timing parameters a reload may change in place.
type liveParams struct{ latency, maxLatency time.Duration }

// New builds an rtp-reorder stage.
func New(cfg *Config, env *core.Env) (core.Stage, error) {
	cfg.CA = env.Path(cfg.CA)
	if err := checkCA(cfg.CA); err != nil {
		return nil, err
	}
	m := env.Metrics
	s := &Stage{
		cfg: cfg, env: env,
		latency: cfg.Latency, maxLatency: cfg.MaxLatency,
		token:       cfg.Token,
		reconf:      make(chan struct{}, 1),
		repairs:     make(chan *core.Packet, repairQueue),
		gones:       make(chan gone, 256),
		known:       make(chan uint32, 256),
		initDone:    make(chan *buffer, maxInitFetches),
		streams:     map[*core.Stream]*buffer{},
		bySSRC:      map[uint32]*buffer{},
		nacksSent:   m.Counter("nacks_sent"),
		repaired:    m.Counter("repaired"),
		gonesRecv:   m.Counter("gone"),
		initFetched: m.Counter("init_fetched"),
		// Receiver reports sent to the clouds, and those a full stream
		// or an error kept back (the next one supersedes them).
		reportsSent:   m.Counter("reports_sent"),
		reportsUnsent: m.Counter("reports_unsent"),
		// gaps not asked for: the cloud does not know the stream's SSRC
		nacksUnknown: m.Counter("nacks_unknown_ssrc"),
		// Skipped gaps whose last ask was refused by the cloud's rate
		// limit, or could not be sent (not connected, stream busy).
		repairRefused:     m.Counter("repair_refused"),
		repairUnavailable: m.Counter("repair_unavailable"),
		// Repairs that came after latency, within a wait lengthened
		// by a slow round trip: a fixed latency would have lost them.
		repairedLate: m.Counter("repaired_after_latency"),
		gapSkipped:   m.Drop("gap_skipped"),
		duplicate:    m.Drop("duplicate"),
		late:         m.Drop("late"),
		overflow:     m.Drop("overflow"),
		queueFull:    m.Drop("repair_queue_full"),
		notRTP:       m.Drop("not_rtp"),
		otherPT:      m.Drop("other_payload_type"), // parity with no fec-decoder before this stage
		rttGauge:     m.Gauge("rtt_seconds"),
		waitGauge:    m.Gauge("gap_wait_seconds"),
		connGauge:    m.Gauge("repair_connected"),
	}
	s.benv = bufferEnv{
		now:         func() time.Time { return s.env.Clock.Now() },
		latency:     cfg.Latency,
		wait:        s.gapWait,
		maxWait:     max(cfg.MaxLatency, cfg.Latency),
		retry:       s.retryInterval,
		rto:         s.repairTimeout,
		wake:        s.schedule,
		nack:        func(b *buffer) { s.dirty = append(s.dirty, b) },
		repairDelay: s.sampleRepairDelay,
		gapSkipped:  s.gapSkipped,
		duplicate:   s.duplicate,
		late:        s.late,
		overflow:    s.overflow,
		repaired:    s.repaired,
		refused:     s.repairRefused,
		unavailable: s.repairUnavailable,
		repairLate:  s.repairedLate,
		rebuilt:     m.Counter("fec_rebuilt"),
	}
	return s, nil
}

// Run reorders packets until in closes.
func (s *Stage) Run(ctx context.Context, in <-chan *core.Packet, out core.Output) error {
	s.initCtx, s.initStop = context.WithCancel(ctx)
	s.applyLive() // a reload may have come before Run
	if len(s.cfg.Retransmit) > 0 {
		s.connGauge.Set(0)
		// Under tokenMu: a token Reconfigure sets from now on reaches the
		// clients through SetToken.
		s.tokenMu.Lock()
		m := &clients{owner: map[uint32]*repair.Client{}}
		var err error
		for _, addr := range s.cfg.Retransmit {
			var c *repair.Client
			c, err = repair.Dial(repair.ClientConfig{
				Addr: addr, Token: s.token, CAFile: s.cfg.CA, Log: s.env.Log,
				OnRepair: s.onRepair,
				OnGone:   s.onGone,
				// Over the cloud's rate limit: asked again at the retry,
				// counted if the gap is skipped still refused.
				OnRefused: s.onRefused,
				// No NACK for an SSRC the cloud never heard of (a
				// stranger's, or another cloud's).
				VetSSRCs: true,
				OnKnown:  s.onKnown,
				// The gauge follows the connections themselves, not the gaps.
				OnConnect: func() { s.connGauge.Set(float64(m.connected.Add(1))) },
				OnDisconnect: func() { // after every session that was up: paired with OnConnect
					n := m.connected.Add(-1)
					s.connGauge.Set(float64(n))
					if n == 0 {
						s.rttGauge.Set(0)
					}
				},
			})
			if err != nil {
				err = fmt.Errorf("retransmit %s: %w", addr, err)
				break
			}
			m.cs = append(m.cs, c)
		}
		if err == nil {
			s.client = m
			s.shared.Store(m)
		}
		s.tokenMu.Unlock()
		if err != nil {
			_ = m.Close()
			s.initStop()
			return err
		}
	}
	s.timer = s.env.Clock.NewTimer(time.Hour)
	s.timer.Stop()
	defer s.shutdown(out)
	// Reports go once a second; with no repair connection nothing is sent.
	if s.client != nil {
		s.reportTimer = s.env.Clock.NewTimer(core.UntilAligned(s.env.Clock.Now(), ReportInterval))
		defer s.reportTimer.Stop()
	}

	for {
		select {
		case p, ok := <-in:
			if !ok {
				return nil
			}
			s.applyLive()
			s.handle(p, out)
			// Batch the NACKs of a burst, but never hold them long when
			// the input stays busy.
			if s.sinceFlush++; len(in) == 0 || s.sinceFlush >= flushEvery {
				s.flushNacks()
				s.sinceFlush = 0
			}
		case p := <-s.repairs:
			s.handleRepair(p, out)
		case g := <-s.gones:
			s.handleGone(g, out)
		case ssrc := <-s.known:
			s.handleKnown(ssrc)
		case b := <-s.initDone:
			s.initFinished(b)
		case <-s.timer.C():
			s.applyLive()
			s.timerAt = time.Time{}
			s.drainReplies(out)
			s.service(out)
		case <-s.reportC():
			s.sendReports()
			s.reportTimer.Reset(core.UntilAligned(s.env.Clock.Now(), ReportInterval))
		case <-s.reconf:
			s.applyLive()
		}
	}
}

// Reconfigure applies a reload's token, latency and max_latency while Run
// runs (cfg is validated; its other fields are as built). The token goes
// to the repair client for its next HELLO; the timing is taken up by Run
// before the next packet it handles, so a gap found after this returns
// waits the new latency.
func (s *Stage) Reconfigure(cfg *Config) error {
	// The host calls this only when live parameters changed; anything
	// else asks for a restart rather than being ignored.
	was, now := *s.cfg, *cfg
	now.CA = s.env.Path(now.CA) // as New resolved it
	was.Token, was.Latency, was.MaxLatency = "", 0, 0
	now.Token, now.Latency, now.MaxLatency = "", 0, 0
	sameAddrs := slices.Equal(was.Retransmit, now.Retransmit)
	was.Retransmit, now.Retransmit = nil, nil
	if !sameAddrs || !reflect.DeepEqual(was, now) {
		return fmt.Errorf("rtp-reorder: only token, latency and max_latency change in place: %w", core.ErrNotLive)
	}
	s.tokenMu.Lock()
	defer s.tokenMu.Unlock()
	if c := s.shared.Load(); c != nil {
		if err := c.SetToken(cfg.Token); err != nil {
			return fmt.Errorf("rtp-reorder: %w", err)
		}
	}
	s.token = cfg.Token
	s.live.Store(&liveParams{latency: cfg.Latency, maxLatency: cfg.MaxLatency})
	select {
	case s.reconf <- struct{}{}:
	default: // Run is woken already
	}
	return nil
}

// applyLive takes up the timing parameters Reconfigure last stored, if Run
// has not yet: one atomic load when nothing changed.
func (s *Stage) applyLive() {
	p := s.live.Load()
	if p == nil || p == s.applied {
		return
	}
	s.applied = p
	s.latency, s.maxLatency = p.latency, p.maxLatency
	s.benv.latency, s.benv.maxWait = s.latency, s.maxWait()
	if s.client != nil {
		s.waitGauge.Set(s.gapWait().Seconds())
	}
}

// drainReplies handles the replies already here, so service does not ask
// again for a packet that has arrived but not been read yet.
func (s *Stage) drainReplies(out core.Output) {
	for range repairQueue {
		select {
		case p := <-s.repairs:
			s.handleRepair(p, out)
		case g := <-s.gones:
			s.handleGone(g, out)
		default:
			return
		}
	}
}

// shutdown releases what is held, in order, and stops every helper.
func (s *Stage) shutdown(out core.Output) {
	for st, b := range s.streams {
		b.flush(out)
		delete(s.streams, st)
		s.losses.Remove(st)
		if b.endPkt != nil {
			out.Emit(b.endPkt)
			b.endPkt = nil
		}
	}
	s.initStop()
	if s.client != nil {
		_ = s.client.Close()
	}
	s.initWG.Wait()
	for {
		select {
		case p := <-s.repairs:
			p.Release()
		default:
			s.timer.Stop()
			return
		}
	}
}

// Connected reports whether the stage has its repair connection up.
func (s *Stage) Connected() bool {
	c := s.shared.Load()
	return c != nil && c.Connected()
}

// onRepair runs on a client reader goroutine: copy and hand to Run.
func (s *Stage) onRepair(_ uint32, _ uint16, pkt []byte) {
	p := core.NewPacket(len(pkt))
	copy(p.Data, pkt)
	// As udp-source fills them for packets off the wire.
	p.Timestamp = rtpheader.Timestamp(pkt)
	p.Ingest = time.Now().UnixNano()
	select {
	case s.repairs <- p:
	default:
		p.Release()
		s.queueFull.Inc()
	}
}

// onKnown runs on the client's checker goroutine; a full queue leaves the
// gaps to the retry pass.
func (s *Stage) onKnown(ssrc uint32) {
	select {
	case s.known <- ssrc:
	default:
	}
}

// handleKnown asks at once for the gaps of a stream found while the cloud
// was being asked whether it knows the stream's SSRC.
func (s *Stage) handleKnown(ssrc uint32) {
	b := s.bySSRC[ssrc]
	if b == nil || b.missing == 0 {
		return
	}
	b.askAll(s.env.Clock.Now(), s.retryInterval())
	if len(b.pending) > 0 {
		s.nack(b)
		b.pending = b.pending[:0]
	}
	s.schedule(b.nextEvent)
}

func (s *Stage) onGone(ssrc uint32, seqs []uint16) { s.reply(ssrc, seqs, false) }

func (s *Stage) onRefused(ssrc uint32, seqs []uint16) { s.reply(ssrc, seqs, true) }

// reply runs on a client reader goroutine: copy and hand to Run.
func (s *Stage) reply(ssrc uint32, seqs []uint16, refused bool) {
	select {
	case s.gones <- gone{ssrc: ssrc, seqs: append([]uint16(nil), seqs...), refused: refused}:
	default: // the gap just waits out its latency
	}
}

// handle takes one packet from the input.
func (s *Stage) handle(p *core.Packet, out core.Output) {
	switch p.Event {
	case core.EventStart:
		if b, ok := s.streams[p.Stream]; ok && b.endPkt != nil {
			s.finishEnd(b, out) // restarted before its end was released
		}
		if _, ok := s.streams[p.Stream]; !ok {
			s.newBuffer(p.Stream)
		}
		out.Emit(p)
		return
	case core.EventEnd:
		b, ok := s.streams[p.Stream]
		if !ok {
			out.Emit(p)
			return
		}
		if b.endPkt != nil { // ended twice: the first end stands
			p.Release()
			return
		}
		// The end (an RTCP BYE) follows the last packets closer than a
		// repair round trip: a gap among them would be given up at once.
		// Hold the end until the open gaps are repaired, gone or due.
		// The last packets themselves may be lost too: ask past them.
		if s.client != nil {
			b.probeTail(tailProbes)
		}
		b.endPkt = p
		s.maybeFinish(b, out)
		return
	}
	b := s.streams[p.Stream]
	if b != nil && b.endPkt != nil { // data after the end: a new run
		s.finishEnd(b, out)
		b = nil
	}
	if b == nil { // joined without seeing the start
		b = s.newBuffer(p.Stream)
	}
	if _, _, err := rtpheader.Check(p.Data); err != nil {
		s.notRTP.Inc()
		p.Release()
		return
	}
	seq, ssrc, pt := rtpheader.Seq(p.Data), rtpheader.SSRC(p.Data), rtpheader.PayloadType(p.Data)
	if (!b.started || pt != b.pt) && fecparity.Is(p.Data) {
		// Parity first (no fec-decoder before this stage, joined
		// mid-stream or the cloud restarted): not the media, whose
		// payload type is learned from its first packet.
		s.otherPT.Inc()
		p.Release()
		return
	}
	if b.started && pt != b.pt {
		s.otherPT.Inc() // parity is not media: it must not restart the stream
		p.Release()
		return
	}
	if !b.started || b.ssrc != ssrc {
		s.restart(b, ssrc, out)
		b.pt = pt
		if missedStart(p.Data) {
			s.wantInit(b)
		}
		b.fromStart = opensStream(p.Data)
	}
	b.insert(p, seq, false, out)
}

// missedStart reports whether pkt, the first packet seen of an SSRC, shows
// that the edge joined after the stream's start: a stream starts with its
// init tags (onMetaData, sequence headers), and the first opens the first
// packet. A lost first packet makes this say so too, at the cost of one
// fetch.
func missedStart(pkt []byte) bool {
	start, end, err := rtpheader.Check(pkt)
	if err != nil || end-start < flv.HeaderSize {
		return true
	}
	tag := pkt[start:end]
	h, _ := flv.ParseHeader(tag)
	return h.StreamID != 0 || flv.InitKindOf(h.Type, tag[flv.HeaderSize:]) == flv.InitNone
}

// opensStream reports whether pkt, the first packet seen of an SSRC, is the
// stream's very first: it opens with onMetaData at time 0, the tag every
// publisher starts with. Nothing came before it, so asking for the packets
// before it would only bring a NACK per probe answered gone (four per new
// stream, even with no loss). A stream whose first packet was lost, or that
// starts without onMetaData, is probed as before.
func opensStream(pkt []byte) bool {
	start, end, err := rtpheader.Check(pkt)
	if err != nil || end-start < flv.HeaderSize {
		return false
	}
	tag := pkt[start:end]
	h, _ := flv.ParseHeader(tag)
	return h.StreamID == 0 && h.Timestamp == 0 && h.Type == flv.TypeScript && flv.IsOnMetaData(tag[flv.HeaderSize:])
}

// handleRepair takes a repaired packet from onRepair; the repair client
// passes on only packets whose header rtpheader.Check accepted.
func (s *Stage) handleRepair(p *core.Packet, out core.Output) {
	b := s.bySSRC[rtpheader.SSRC(p.Data)]
	if b == nil {
		s.late.Inc()
		p.Release()
		return
	}
	p.Stream = b.stream
	b.insert(p, rtpheader.Seq(p.Data), true, out)
	s.maybeFinish(b, out)
}

func (s *Stage) handleGone(g gone, out core.Output) {
	if g.refused {
		if b := s.bySSRC[g.ssrc]; b != nil {
			b.note(g.seqs, whyRefused)
		}
		return
	}
	s.gonesRecv.Add(float64(len(g.seqs)))
	if b := s.bySSRC[g.ssrc]; b != nil {
		b.markGone(g.seqs, out)
		s.maybeFinish(b, out)
	}
}

// maybeFinish releases b's held end once no gap is open (or nothing can
// repair one).
func (s *Stage) maybeFinish(b *buffer, out core.Output) {
	if b.endPkt != nil && (b.missing == 0 || s.client == nil) {
		s.finishEnd(b, out)
	}
}

// finishEnd flushes b, forgets it and emits its held end.
func (s *Stage) finishEnd(b *buffer, out core.Output) {
	end := b.endPkt
	b.endPkt = nil
	b.flush(out)
	s.dropBuffer(b)
	out.Emit(end)
}

func (s *Stage) newBuffer(st *core.Stream) *buffer {
	b := newBuffer(&s.benv, st, s.cfg.MaxPackets)
	s.streams[st] = b
	s.losses.Add(st, b.loss)
	return b
}

// ReportLoss reports each stream's loss figures (core.LossReporter), for
// the per-stream metrics.
func (s *Stage) ReportLoss(report func(stream string, l *core.StreamLoss)) { s.losses.Each(report) }

// wantInit fetches b's init tags from the cloud once: now if fewer than
// maxInitFetches fetches run, else when one ends.
func (s *Stage) wantInit(b *buffer) {
	if s.client == nil || b.initAsked || b.stream.Init() != nil {
		return
	}
	b.initAsked = true
	if s.initRunning < maxInitFetches {
		s.runInit(b)
		return
	}
	s.initWait = append(s.initWait, b)
}

func (s *Stage) runInit(b *buffer) {
	ctx, cancel := context.WithCancel(s.initCtx)
	b.stopInit = cancel
	s.initRunning++
	s.initWG.Add(1)
	go func() {
		defer s.initWG.Done()
		s.fetchInit(ctx, b.stream)
		s.initDone <- b
	}()
}

// initFinished frees a fetch slot and gives it to the next waiting stream.
func (s *Stage) initFinished(b *buffer) {
	s.initRunning--
	if b.stopInit != nil {
		b.stopInit()
		b.stopInit = nil
	}
	for len(s.initWait) > 0 && s.initRunning < maxInitFetches {
		w := s.initWait[0]
		s.initWait[0] = nil
		s.initWait = s.initWait[1:]
		s.runInit(w)
	}
}

func (s *Stage) dropBuffer(b *buffer) {
	if b.stopInit != nil {
		b.stopInit()
		b.stopInit = nil
	}
	if i := slices.Index(s.initWait, b); i >= 0 {
		s.initWait = slices.Delete(s.initWait, i, i+1)
	}
	delete(s.streams, b.stream)
	s.losses.Remove(b.stream)
	if b.started && s.bySSRC[b.ssrc] == b {
		delete(s.bySSRC, b.ssrc)
		if s.client != nil {
			s.client.Forget(b.ssrc)
		}
	}
}

// restart points b at a new SSRC (first packet, or the publisher came back
// with a new one): what the old one held is released first.
func (s *Stage) restart(b *buffer, ssrc uint32, out core.Output) {
	if b.started {
		b.flush(out)
		if s.bySSRC[b.ssrc] == b {
			delete(s.bySSRC, b.ssrc)
			if s.client != nil {
				s.client.Forget(b.ssrc)
			}
		}
		s.env.Log.Info("stream changed SSRC", "stream", b.stream.Name, "old", b.ssrc, "new", ssrc)
	}
	b.reset(ssrc)
	s.bySSRC[ssrc] = b
	if s.client != nil {
		s.client.Vet(ssrc) // the answer is back before a gap wants a NACK
	}
}

// fetchInit asks the cloud for the stream's init tags, so a stream joined
// late is playable; it gives up once the stream has them or ends, or when
// the cloud twice does not know its name (a stranger's stream; the second
// ask covers a stream the cloud started just now).
func (s *Stage) fetchInit(ctx context.Context, st *core.Stream) {
	unknown := 0
	for range initAttempts {
		if st.Init() != nil {
			return
		}
		rctx, cancel := context.WithTimeout(ctx, initTimeout)
		tags, err := s.client.Init(rctx, 0, st.Name)
		cancel()
		if err == nil && tags != nil {
			if st.Init() == nil {
				st.SetInit(tags)
				s.initFetched.Inc()
				s.env.Log.Info("init tags fetched from the cloud", "stream", st.Name)
			}
			return
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, repair.ErrUnknownStream) {
			if unknown++; unknown >= 2 {
				return
			}
		}
		t := time.NewTimer(initPause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

// retryInterval is how long to wait for a repair before asking again:
// 1.5 round trips, the round trip being the larger of QUIC's estimate and
// the measured NACK-to-repair delay (which also counts time spent queued
// in either process when it is busy).
func (s *Stage) retryInterval() time.Duration {
	if s.client == nil {
		return 0
	}
	rtt := max(s.client.RTT(), s.srtt)
	if rtt <= 0 {
		return defaultRetry
	}
	return max(rtt*3/2, minRetry)
}

// maxWait bounds a gap's wait: max_latency, or latency if that is longer.
func (s *Stage) maxWait() time.Duration { return max(s.maxLatency, s.latency) }

// gapWait is how long a new gap waits for its repair: latency while a
// repair comes back sooner, else long enough for one answer (the round
// trip's timeout, as TCP's SRTT + 4 RTTVAR of the measured NACK-to-repair
// delays), up to maxWait. One answer, not a retry: NACKs and repairs
// travel on reliable QUIC streams, so a retry only helps after a refusal.
// Before a repair is measured a gap gets latency, and waits on past it
// while its ask is unanswered (buffer.waitOn). QUIC's own RTT is not used:
// it leaves out the time replies spend queued in a busy process, and its
// first sample counts the handshake's crypto.
func (s *Stage) gapWait() time.Duration {
	if s.client == nil || s.srtt == 0 {
		return s.latency
	}
	return min(max(s.srtt+4*s.rttvar, s.latency), s.maxWait())
}

// repairTimeout is how long an ask may take to be answered: the measured
// NACK-to-repair round trip's timeout (SRTT + 4 RTTVAR), or the retry
// interval before any repair is measured.
func (s *Stage) repairTimeout() time.Duration {
	if s.srtt == 0 {
		return s.retryInterval()
	}
	return s.srtt + 4*s.rttvar
}

// sampleRepairDelay folds one NACK-to-repair delay into the smoothed round
// trip and its deviation (TCP's weights, 1/8 and 1/4). It counts repairs
// that came late too: a round trip longer than latency is just what the
// wait must learn. A sample beyond maxWait could not lengthen the wait
// further and is ignored (the gap was asked before a reconnection).
func (s *Stage) sampleRepairDelay(d time.Duration) {
	if d <= 0 || d > s.maxWait() {
		return
	}
	if s.srtt == 0 {
		s.srtt, s.rttvar = d, d/2
		s.waitGauge.Set(s.gapWait().Seconds())
		return
	}
	dev := s.srtt - d
	if dev < 0 {
		dev = -dev
	}
	s.rttvar += (dev - s.rttvar) / 4
	s.srtt += (d - s.srtt) / 8
	s.waitGauge.Set(s.gapWait().Seconds())
}

// schedule arms the timer for at, unless it is armed earlier already.
func (s *Stage) schedule(at time.Time) {
	if at.IsZero() || (!s.timerAt.IsZero() && !at.Before(s.timerAt)) {
		return
	}
	s.timerAt = at
	s.timer.Reset(max(at.Sub(s.env.Clock.Now()), 0))
}

// flushNacks sends the NACKs queued while the input was busy, one batch per
// stream.
func (s *Stage) flushNacks() {
	if len(s.dirty) == 0 {
		return
	}
	for _, b := range s.dirty {
		b.dirty = false
		if len(b.pending) == 0 {
			continue
		}
		// Not sent (not connected, window full): the retry pass asks again.
		if s.client != nil {
			s.nack(b)
		}
		b.pending = b.pending[:0]
		s.schedule(b.nextEvent)
	}
	s.dirty = s.dirty[:0]
}

// nack sends b's pending NACKs. Not sent (not connected, window full, SSRC
// being vetted): the retry pass asks again, and a gap skipped before it is
// counted as repair_unavailable; SSRC unknown to the cloud: counted, and
// asked again at the retry only once the client's back-off for it is over.
func (s *Stage) nack(b *buffer) {
	switch err := s.client.Nack(b.ssrc, b.pending); {
	case err == nil:
		s.nacksSent.Add(float64(len(b.pending)))
		b.note(b.pending, whyAsked)
	case errors.Is(err, repair.ErrUnknownSSRC):
		s.nacksUnknown.Add(float64(len(b.pending)))
		b.note(b.pending, whyUnknown)
	case errors.Is(err, repair.ErrChecking):
		// Sent once the cloud says it knows the SSRC (handleKnown): a
		// round trip under way, which the gap may wait on.
		b.note(b.pending, whyVetting)
	default:
		b.note(b.pending, whyUnavailable)
	}
}

// service runs when the timer fires: skips gaps whose time is up and
// re-asks for the others.
func (s *Stage) service(out core.Output) {
	now := s.env.Clock.Now()
	retry := s.retryInterval()
	if s.client != nil {
		s.rttGauge.Set(s.client.RTT().Seconds())
		s.waitGauge.Set(s.gapWait().Seconds())
	}
	var next time.Time
	for _, b := range s.streams {
		if b.missing > 0 && !b.nextEvent.After(now) {
			b.service(now, retry, out)
			if len(b.pending) > 0 {
				s.nack(b)
				b.pending = b.pending[:0]
			}
			if b.endPkt != nil && b.missing == 0 {
				s.finishEnd(b, out)
				continue
			}
		}
		if b.missing > 0 && (next.IsZero() || b.nextEvent.Before(next)) {
			next = b.nextEvent
		}
	}
	s.schedule(next)
}

// reportC is the report timer's channel; nil (never ready) without one.
func (s *Stage) reportC() <-chan time.Time {
	if s.reportTimer == nil {
		return nil
	}
	return s.reportTimer.C()
}
