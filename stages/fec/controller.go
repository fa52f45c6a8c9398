package fec

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/control"
	"github.com/mediapipe/mediapipe/core/control/policy"
)

// controller is fec-encoder's transmission control loop (docs/control.md):
// once per interval, on its own goroutine and never on the packet path, it
// gathers what the encoder sent and what the pipeline's other stages know
// (the edges' reports, the repair budget), asks the policy, and applies the
// decision to the encoder, the Pacer and the RepairSharer.
type controller struct {
	e        *Encoder
	name     string // the policy's name
	path     string // plugin: its executable
	interval atomic.Int64
	budget   atomic.Int64 // latency budget, ns
	// deadline bounds a Decide call; 0: half the interval.
	deadline time.Duration

	policy control.Policy

	// The loop's own state (one goroutine, or a test calling tick).
	lastAt      time.Time
	prev        map[*flow]flowSample
	meanGroup   map[*flow]float64        // last measured, kept while no parity is sent
	held        map[*flow]heldReports    // each stream's last reports, for a new SSRC's first rounds
	parityBytes map[*flow]float64        // mean parity packet size, last measured
	repaired    map[int]uint64           // RepairedBytes at the last tick
	paced       map[*core.Stream]float64 // pacing applied, per stream
	rates       map[int]int              // repair rates applied
	busy        chan struct{}            // closed when a Decide call that overran returns
	reset       chan struct{}            // the interval changed: re-arm the timer
	loopDone    chan struct{}            // closed when the loop's goroutine has ended (tests)
	kept        control.Decision         // what is applied now
	errsSince   int                      // policy failures not yet logged
	noFeedback  bool                     // logged that no EdgeReporter is in the pipeline
	errLogged   time.Time

	mu   sync.Mutex
	last control.Tick
	have bool

	errors, changes prometheus.Counter
	ctx             context.Context
	cancel          context.CancelFunc
}

type flowSample struct {
	bytes, packets, groups, grouped uint64
	parity, parityB                 uint64
	vgroups, vlongest               uint64
}

// errBusy: the previous Decide call has not returned yet.
var errBusy = errors.New("the previous decision is still being made")

func newController(e *Encoder, cfg *EncoderConfig) (*controller, error) {
	c := &controller{e: e, name: cfg.Policy, path: cfg.Path,
		prev: map[*flow]flowSample{}, reset: make(chan struct{}, 1), held: map[*flow]heldReports{}, parityBytes: map[*flow]float64{}, meanGroup: map[*flow]float64{}, paced: map[*core.Stream]float64{},
		errors: e.env.Metrics.Counter("control_policy_errors"), changes: e.env.Metrics.Counter("control_decisions")}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.interval.Store(int64(cfg.Interval))
	c.budget.Store(int64(cfg.LatencyBudget))
	if cfg.Policy != policy.NamePlugin {
		p, err := policy.New(cfg.Policy, e.defaultOverhead)
		if err != nil {
			return nil, err
		}
		c.policy = p
	}
	return c, nil
}

// open starts a plugin policy.
func (c *controller) open() error {
	if c.policy != nil {
		return nil
	}
	path := c.e.env.Path(c.path)
	p, err := control.OpenPlugin(path)
	if err != nil {
		return fmt.Errorf("policy plugin: %s: %w", path, err)
	}
	c.policy = p
	c.e.env.Log.Info("policy plugin started", "path", path)
	return nil
}

func (c *controller) reconfigure(cfg *EncoderConfig) {
	old := c.interval.Swap(int64(cfg.Interval))
	c.budget.Store(int64(cfg.LatencyBudget))
	if old != int64(cfg.Interval) {
		// The loop re-arms its timer now, not when the old interval (up
		// to a minute) has run out.
		select {
		case c.reset <- struct{}{}:
		default: // one pending reset is enough
		}
	}
}

// start runs the loop on its own goroutine; the function it returns stops
// it and closes the policy.
func (c *controller) start() (stop func()) {
	done := make(chan struct{})
	c.loopDone = done
	go func() {
		defer close(done)
		c.loop()
	}()
	return func() {
		c.cancel()
		<-done
		c.waitBusy(2 * time.Second)
		if c.policy != nil {
			if err := c.policy.Close(); err != nil {
				c.e.env.Log.Warn("fec-encoder: closing the policy", "policy", c.name, "err", err)
			}
		}
		// A plugin's Close ends its process, which ends a call stuck in it.
		c.waitBusy(2 * time.Second)
	}
}

// waitBusy waits, at most d, for a Decide call that overran to return.
func (c *controller) waitBusy(d time.Duration) {
	if c.busy == nil {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.busy:
		c.busy = nil
	case <-t.C:
		c.e.env.Log.Warn("fec-encoder: the policy did not return from a decision at shutdown", "policy", c.name)
	}
}

func (c *controller) loop() {
	t := c.e.env.Clock.NewTimer(time.Duration(c.interval.Load()))
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C():
			c.tick()
			t.Reset(time.Duration(c.interval.Load()))
		case <-c.reset:
			t.Stop()
			t.Reset(time.Duration(c.interval.Load()))
		}
	}
}

// siblings are the stages of the pipeline the loop drives, found anew each
// tick (a reload replaces them); those absent are nil.
type siblings struct {
	reporter core.EdgeReporter
	sharer   control.RepairSharer
	pacer    control.Pacer
}

func (c *controller) findSiblings() (s siblings) {
	for _, st := range c.e.env.Siblings() {
		if st == core.Stage(c.e) {
			continue
		}
		if r, ok := st.(core.EdgeReporter); ok && s.reporter == nil {
			s.reporter = r
		}
		if r, ok := st.(control.RepairSharer); ok && s.sharer == nil {
			s.sharer = r
		}
		if p, ok := st.(control.Pacer); ok && s.pacer == nil {
			s.pacer = p
		}
	}
	return s
}

// tick is one round: gather, decide, apply, record.
func (c *controller) tick() {
	now := c.e.env.Clock.Now()
	elapsed := time.Duration(c.interval.Load())
	if !c.lastAt.IsZero() && now.After(c.lastAt) {
		elapsed = now.Sub(c.lastAt)
	}
	c.lastAt = now
	sib := c.findSiblings()
	in, flows := c.gather(sib, now, elapsed.Seconds())

	tick := control.Tick{At: now, Policy: c.name, Input: in}
	if sib.reporter == nil && (c.name == policy.NameLossAdaptive || c.name == policy.NameMeanField) {
		// No quic-retransmit here: no feedback and no repair, so the
		// adaptive policies have nothing to go on and the fixed overhead
		// stays (they would otherwise send no parity at all).
		if !c.noFeedback {
			c.noFeedback = true
			c.e.env.Log.Info("fec-encoder: no edge feedback in this pipeline (no quic-retransmit): the fixed overhead applies", "policy", c.name, "overhead", c.e.defaultOverhead())
		}
		tick.Decision = c.kept
		c.mu.Lock()
		c.last, c.have = tick, true
		c.mu.Unlock()
		return
	}
	d, err := c.decide(&in)
	if err != nil {
		c.fail(err)
		tick.Decision, tick.Err = c.kept, err.Error()
	} else {
		d = sanitize(d)
		c.apply(sib, &in, flows, d)
		tick.Decision = d
	}
	c.mu.Lock()
	c.last, c.have = tick, true
	c.mu.Unlock()
}

// gather builds the policy's input; flows[i] is in.Streams[i]'s.
func (c *controller) gather(sib siblings, now time.Time, seconds float64) (control.Input, []*flow) {
	e := c.e
	in := control.Input{IntervalSeconds: seconds, Streams: []control.Stream{}, Edges: []int{}}
	e.mu.Lock()
	all := make([]*flow, 0, len(e.flows))
	for _, f := range e.flows {
		all = append(all, f)
	}
	e.mu.Unlock()
	slices.SortFunc(all, func(a, b *flow) int { return strings.Compare(a.stream.Name, b.stream.Name) })

	// The repair each edge got over the interval, from the cumulative counts.
	repairRate := map[int]float64{}
	if sib.sharer != nil {
		in.RepairBudget = sib.sharer.RepairBudget()
		got := sib.sharer.RepairedBytes()
		for id, b := range got {
			if old, ok := c.repaired[id]; ok && b >= old && seconds > 0 {
				repairRate[id] = float64(b-old) / seconds
			}
		}
		c.repaired = got
	}
	bySSRC := map[uint32][]control.EdgeReport{}
	if sib.reporter != nil {
		for _, edge := range sib.reporter.Edges() {
			in.Edges = append(in.Edges, edge.ID)
			for _, r := range edge.Streams {
				bySSRC[r.SSRC] = append(bySSRC[r.SSRC], control.EdgeReport{Edge: edge.ID, EdgeStream: r,
					RepairBytesPerSecond: repairRate[edge.ID]})
			}
		}
		slices.Sort(in.Edges)
	}

	flows := make([]*flow, 0, len(all))
	live := make(map[*flow]bool, len(all))
	for _, f := range all {
		live[f] = true
		cur := flowSample{f.bytes.Load(), f.packets.Load(), f.groups.Load(), f.grouped.Load(),
			f.parity.Load(), f.parityB.Load(), f.vgroups.Load(), f.vlongest.Load()}
		prev, seen := c.prev[f]
		c.prev[f] = cur
		burst := f.burst.Swap(0)
		ssrc := f.ssrc.Load()
		if ssrc == 0 && cur.packets == 0 {
			continue // nothing sent yet: no SSRC to match reports with
		}
		if !seen {
			prev = flowSample{}
		}
		s := control.Stream{Stream: f.stream.Name, SSRC: ssrc, KeyframeBurstBytes: int(burst),
			Group: e.cfg.Group, MaxWaitSeconds: e.cfg.MaxWait.Seconds(),
			LatencyBudgetSeconds: time.Duration(c.budget.Load()).Seconds(),
			Edges:                c.reportsFor(f, bySSRC[ssrc], in.Edges, repairRate, now)}
		if seconds > 0 {
			s.MediaBytesPerSecond = float64(cur.bytes-prev.bytes) / seconds
			s.PacketsPerSecond = float64(cur.packets-prev.packets) / seconds
		}
		if n := cur.packets - prev.packets; n > 0 {
			s.MeanPacketBytes = float64(cur.bytes-prev.bytes) / float64(n)
		}
		if g := cur.groups - prev.groups; g > 0 {
			c.meanGroup[f] = float64(cur.grouped-prev.grouped) / float64(g)
		}
		s.MeanGroup = c.meanGroup[f]
		switch n, g := cur.parity-prev.parity, cur.vgroups-prev.vgroups; {
		case n > 0:
			c.parityBytes[f] = float64(cur.parityB-prev.parityB) / float64(n)
		case g > 0:
			c.parityBytes[f] = parityHead + shardPrefix + float64(cur.vlongest-prev.vlongest)/float64(g)
		}
		s.MeanParityBytes = c.parityBytes[f]
		s.Current = control.StreamDecision{Overhead: e.Overhead(f.stream), PaceBytesPerSecond: c.paced[f.stream]}
		in.Streams = append(in.Streams, s)
		flows = append(flows, f)
	}
	// Forget the streams that ended.
	for f := range c.prev {
		if !live[f] {
			delete(c.prev, f)
			delete(c.meanGroup, f)
			delete(c.held, f)
			delete(c.parityBytes, f)
			delete(c.paced, f.stream)
		}
	}
	return in, flows
}

// heldReports are a stream's latest edge reports and when they were seen.
type heldReports struct {
	edges []control.EdgeReport
	at    time.Time
}

// ssrcGrace is how long a stream's last reports stand in for it while its
// edges have not reported its current SSRC: at least 5 s, or 5 intervals.
func (c *controller) ssrcGrace() time.Duration {
	return max(5*time.Second, 5*time.Duration(c.interval.Load()))
}

// reportsFor is the edges' reports on f: those on its current SSRC, or,
// when there are none yet but there were within ssrcGrace, the last ones
// (from the edges still connected). A new SSRC (a publisher reconnecting,
// udp-source's standby taking over) reaches the edges' reports a round or
// two after the cloud sends it; without this the policies would see no
// edges and take the parity away until then. The path's loss is the
// edges', not the SSRC's, so the last reports are a fair stand-in.
func (c *controller) reportsFor(f *flow, reps []control.EdgeReport, connected []int, repairRate map[int]float64, now time.Time) []control.EdgeReport {
	if len(reps) > 0 {
		c.held[f] = heldReports{edges: reps, at: now}
		return reps
	}
	h, ok := c.held[f]
	if !ok || now.Sub(h.at) > c.ssrcGrace() {
		delete(c.held, f)
		return []control.EdgeReport{}
	}
	out := make([]control.EdgeReport, 0, len(h.edges))
	for _, r := range h.edges {
		if _, ok := slices.BinarySearch(connected, r.Edge); ok {
			r.RepairBytesPerSecond = repairRate[r.Edge]
			out = append(out, r)
		}
	}
	return out
}

// decide calls the policy with a deadline. A call that overruns it is
// left to return on its own (the policy was given the cancelled context);
// until it does, no other call is made and each tick counts as a failure.
func (c *controller) decide(in *control.Input) (control.Decision, error) {
	if c.policy == nil {
		return control.Decision{}, errors.New("no policy")
	}
	if c.busy != nil {
		select {
		case <-c.busy:
			c.busy = nil
		default:
			return control.Decision{}, errBusy
		}
	}
	wait := c.deadline
	if wait <= 0 {
		wait = time.Duration(c.interval.Load()) / 2
	}
	ctx, cancel := context.WithTimeout(c.ctx, wait)
	defer cancel()
	type result struct {
		d   control.Decision
		err error
	}
	res := make(chan result, 1)
	done := make(chan struct{})
	pol := c.policy
	go func() {
		defer close(done)
		d, err := pol.Decide(ctx, in)
		res <- result{d, err}
	}()
	select {
	case r := <-res:
		if r.err != nil {
			return control.Decision{}, fmt.Errorf("policy %s: %w", c.name, r.err)
		}
		return r.d, nil
	case <-ctx.Done():
		select {
		case r := <-res: // answered just in time
			if r.err == nil {
				return r.d, nil
			}
		default:
			c.busy = done
		}
		return control.Decision{}, fmt.Errorf("policy %s: no answer within %v", c.name, wait)
	}
}

// fail counts a failed round and logs it, at most once per 10 s.
func (c *controller) fail(err error) {
	c.errors.Inc()
	c.errsSince++
	now := c.e.env.Clock.Now()
	if !c.errLogged.IsZero() && now.Sub(c.errLogged) < 10*time.Second {
		return
	}
	c.e.env.Log.Warn("fec-encoder: policy failed; the current decision stays", "policy", c.name, "err", err, "failures", c.errsSince)
	c.errLogged, c.errsSince = now, 0
}

// apply sets what d decides and logs it when it changed.
func (c *controller) apply(sib siblings, in *control.Input, flows []*flow, d control.Decision) {
	var changes []string
	for i, f := range flows {
		s := &in.Streams[i]
		sd, ok := d.Streams[s.SSRC]
		if !ok {
			continue
		}
		if o := clampOverhead(sd.Overhead); math.Abs(o-s.Current.Overhead) > 1e-9 {
			c.e.SetOverhead(f.stream, o)
			changes = append(changes, fmt.Sprintf("%s overhead %.3f→%.3f", s.Stream, s.Current.Overhead, o))
		}
		pace := max(sd.PaceBytesPerSecond, 0)
		if math.IsNaN(pace) || math.IsInf(pace, 0) {
			pace = 0
		}
		if sib.pacer != nil && pace != c.paced[f.stream] {
			sib.pacer.SetPace(f.stream, pace)
			// Logged only when it moves by more than a tenth: the
			// burst it follows varies a little every interval.
			if old := c.paced[f.stream]; old == 0 || pace == 0 || math.Abs(pace-old) > old/10 {
				changes = append(changes, fmt.Sprintf("%s pace %.0f→%.0f B/s", s.Stream, old, pace))
			}
			c.paced[f.stream] = pace
		}
	}
	if sib.sharer != nil && in.RepairBudget > 0 && len(in.Edges) > 0 {
		rates := make(map[int]int, len(in.Edges))
		for _, id := range in.Edges {
			if share, ok := d.RepairShares[id]; ok && share >= 0 && !math.IsNaN(share) {
				rates[id] = int(min(share, 1) * float64(in.RepairBudget))
			}
		}
		if !mapsEqual(rates, c.rates) {
			sib.sharer.SetRepairRates(rates)
			if len(c.rates) != len(rates) || ratesMoved(c.rates, rates) {
				changes = append(changes, fmt.Sprintf("repair rates %v B/s", rates))
			}
			c.rates = rates
		}
	}
	c.kept = d
	if len(changes) > 0 {
		c.changes.Inc()
		c.e.env.Log.Info("fec-encoder: control decision", "policy", c.name, "changes", strings.Join(changes, ", "), "reason", d.Reason)
	}
}

// sanitize bounds what a policy (a plugin, say) answered: overheads to
// 0 … 1, rates and shares finite and not negative, shares summing to at
// most 1, so what is applied and shown in GET /api/control is sound.
func sanitize(d control.Decision) control.Decision {
	out := control.Decision{Streams: make(map[uint32]control.StreamDecision, len(d.Streams)), Reason: d.Reason}
	for ssrc, sd := range d.Streams {
		pace := sd.PaceBytesPerSecond
		if math.IsNaN(pace) || math.IsInf(pace, 0) || pace < 0 {
			pace = 0
		}
		out.Streams[ssrc] = control.StreamDecision{Overhead: clampOverhead(sd.Overhead), PaceBytesPerSecond: pace}
	}
	if len(d.RepairShares) > 0 {
		out.RepairShares = make(map[int]float64, len(d.RepairShares))
		var sum float64
		for id, v := range d.RepairShares {
			if !math.IsNaN(v) && v >= 0 {
				v = min(v, 1)
				out.RepairShares[id] = v
				sum += v
			}
		}
		// Shares of more than the whole budget are scaled down to it, so
		// the rates set never add up to more than total_rate.
		if sum > 1 {
			for id, v := range out.RepairShares {
				out.RepairShares[id] = v / sum
			}
		}
	}
	return out
}

func clampOverhead(o float64) float64 {
	if math.IsNaN(o) || o < 0 {
		return 0
	}
	return min(o, 1)
}

func mapsEqual(a, b map[int]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// ratesMoved: some edge's rate moved by more than a tenth (worth a log line).
func ratesMoved(old, now map[int]int) bool {
	for k, v := range now {
		if o := old[k]; math.Abs(float64(v-o)) > float64(o)/10 {
			return true
		}
	}
	return false
}

func (c *controller) lastTick() (control.Tick, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last, c.have
}
