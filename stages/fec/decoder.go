package fec

import (
	"context"
	_ "embed"
	"encoding/binary"
	"time"

	"github.com/klauspost/reedsolomon"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediapipe/mediapipe/core"
)

// DecoderConfig is fec-decoder's parameters.
type DecoderConfig struct {
	PayloadType int `param:"payload_type" default:"101" min:"96" max:"127" doc:"RTP payload type of the parity packets, as fec-encoder sends them; packets of any other type are source packets"`
	Window      int `param:"window" default:"256" min:"128" max:"4096" doc:"source packets kept per stream to recover from (copies, at most 4094 bytes each); a group whose last packet is window/2 behind the newest is given up"`
	MaxGroups   int `param:"max_groups" default:"8" min:"1" max:"64" doc:"groups per stream whose parity waits for recovery (a group is its base and geometry: parity claiming a base with another geometry files its own); a further group evicts the oldest one ahead of the stream, else the oldest. Bounds what parity (even a stranger's) can hold: max_groups × 32 × 4 KiB per stream; source packets are never held"`
}

//go:embed decoder.toml
var decoderSample string

func init() {
	core.Register(core.Spec{
		Name:    "fec-decoder",
		Summary: "recovers lost source RTP packets from fec-encoder's Reed-Solomon parity, byte for byte; passes source packets on unchanged and drops parity",
		In:      core.KindRTP,
		Out:     core.KindRTP,
		Sample:  decoderSample,
	}, NewDecoder)
}

// Decoder is a running fec-decoder.
type Decoder struct {
	cfg     DecoderConfig
	env     *core.Env
	pt      uint8
	start   time.Time // now counts from it
	streams map[*core.Stream]*decStream
	codecs  map[[2]int]reedsolomon.Encoder
	out     core.Output

	recovered     prometheus.Counter
	junk          *core.DropCounter
	unmatched     *core.DropCounter
	stale         *core.DropCounter
	unrecoverable *core.DropCounter
	dupParity     *core.DropCounter
}

type slot struct {
	seq  uint16
	ok   bool
	at   int64 // when it came (Decoder.now), for the parity's lag
	data []byte
}

type group struct {
	used    bool
	base    uint16
	k, m, l int
	have    [MaxParity]bool
	parity  [MaxParity][]byte
	count   int    // parity held
	missing int    // source packets missing at the last try
	born    uint64 // arrival order, for eviction
}

type decStream struct {
	stream  *core.Stream
	ssrc    uint32
	has     bool // a source packet was seen: ssrc and newest are set
	newest  uint16
	ring    []slot
	groups  []group
	born    uint64
	scratch [MaxGroup][]byte             // source shards for recovery, MaxShard capacity each
	shards  [MaxGroup + MaxParity][]byte // the view handed to the codec

	// What rtp-reorder is told (core.FECHint): how long after a group's
	// first packet its parity comes (smoothed as TCP's SRTT and RTTVAR),
	// when parity last came, and the open group: the packets from
	// openFrom on, past the last group whose parity came, the first of
	// which came at openAt (0: none yet).
	lag, lagVar time.Duration
	lagOK       bool
	lastParity  int64
	openFrom    uint16
	openAt      int64
	openKnown   bool // openFrom is set (by this SSRC's parity)
}

// NewDecoder builds a fec-decoder stage.
func NewDecoder(cfg *DecoderConfig, env *core.Env) (core.Stage, error) {
	return &Decoder{
		cfg:           *cfg,
		env:           env,
		start:         env.Clock.Now(),
		pt:            uint8(cfg.PayloadType),
		streams:       map[*core.Stream]*decStream{},
		codecs:        map[[2]int]reedsolomon.Encoder{},
		recovered:     env.Metrics.Counter("fec_recovered"),
		junk:          env.Metrics.Drop("fec_junk"),
		unmatched:     env.Metrics.Drop("fec_parity_unmatched"),
		stale:         env.Metrics.Drop("fec_parity_stale"),
		unrecoverable: env.Metrics.Drop("fec_unrecoverable"),
		dupParity:     env.Metrics.Drop("fec_parity_duplicate"),
	}, nil
}

// Run recovers what it can until in closes.
func (d *Decoder) Run(_ context.Context, in <-chan *core.Packet, out core.Output) error {
	d.out = out
	for p := range in {
		d.handle(p)
	}
	return nil
}

func (d *Decoder) handle(p *core.Packet) {
	switch p.Event {
	case core.EventStart:
		if d.streams[p.Stream] == nil {
			d.streams[p.Stream] = d.newStream(p.Stream)
		}
		d.out.Emit(p)
		return
	case core.EventEnd:
		if st := d.streams[p.Stream]; st != nil {
			d.giveUpAll(st)
			delete(d.streams, p.Stream)
		}
		d.out.Emit(p)
		return
	}
	st := d.streams[p.Stream]
	if st == nil {
		st = d.newStream(p.Stream)
		d.streams[p.Stream] = st
	}
	pt, seq, _, ssrc, ok := rtpFields(p.Data)
	if !ok {
		d.out.Emit(p) // not ours to judge
		return
	}
	if pt == d.pt {
		d.parity(st, p)
		p.Release()
		return
	}
	now := d.now()
	d.source(st, p.Data, seq, ssrc, now)
	if st.openKnown && st.openAt == 0 && int16(seq-st.openFrom) >= 0 {
		st.openAt = now
	}
	p.FEC = st.hint(now)
	d.out.Emit(p)
	d.retry(st, seq)
}

// now is the time since the decoder started, in ns, at least 1 (0 means
// none): a monotonic reading, so a step of the wall clock does not make
// the parity's lag negative or a hold last hours.
func (d *Decoder) now() int64 {
	return max(int64(d.env.Clock.Now().Sub(d.start)), 0) + 1
}

func (d *Decoder) newStream(s *core.Stream) *decStream {
	return &decStream{stream: s, ring: make([]slot, d.cfg.Window), groups: make([]group, d.cfg.MaxGroups)}
}

// source keeps a copy of a source packet for recovery.
func (d *Decoder) source(st *decStream, b []byte, seq uint16, ssrc uint32, now int64) {
	if !st.has || ssrc != st.ssrc {
		if st.has {
			d.giveUpAll(st) // a new sender: the old groups cannot complete
			for i := range st.ring {
				st.ring[i].ok = false
			}
			st.openKnown = false
		}
		st.ssrc, st.has, st.newest = ssrc, true, seq
	}
	if dist := int(int16(seq - st.newest)); dist >= len(st.ring) || -dist >= len(st.ring) {
		// A jump past the window (a sender restarted with this SSRC):
		// the open group is not this sequence's; parity reopens one.
		st.openKnown = false
	}
	if int16(seq-st.newest) > 0 {
		st.newest = seq
	}
	if len(b) > MaxShard-shardPrefix {
		return
	}
	s := &st.ring[int(seq)%len(st.ring)]
	s.seq, s.ok, s.at = seq, true, now
	s.data = resize(s.data[:0], len(b))
	copy(s.data, b)
}

// retry tries the groups seq belongs to, and gives up on groups left behind.
func (d *Decoder) retry(st *decStream, seq uint16) {
	for i := range st.groups {
		g := &st.groups[i]
		if !g.used {
			continue
		}
		if int(uint16(st.newest-g.base)) >= g.k+len(st.ring)/2 && int16(st.newest-g.base) > 0 {
			d.giveUp(st, g)
			continue
		}
		if uint16(seq-g.base) < uint16(g.k) {
			if d.try(st, g); !g.used {
				st.settled(g)
			}
		}
	}
}

// parity files a parity packet under its group and tries the group.
func (d *Decoder) parity(st *decStream, p *core.Packet) {
	f, ok := parseParity(p.Data, d.pt)
	// The encoder ties the parity's own SSRC to the one it protects.
	if !ok || f.k > len(st.ring)/2 || len(f.shard) < shardPrefix+rtpHeader || binary.BigEndian.Uint32(p.Data[8:]) != f.ssrc^paritySSRCMask {
		d.junk.Inc()
		return
	}
	if !st.has {
		// a group lost whole before any source arrived: the parity
		// names the sender (the receiver put it on this stream by it)
		st.ssrc, st.has, st.newest = f.ssrc, true, f.base
	}
	if f.ssrc != st.ssrc {
		d.unmatched.Inc()
		return
	}
	// (in int: -int16(-32768) would wrap back to itself)
	if dist := int(int16(f.base - st.newest)); dist > len(st.ring)/2 || -dist >= len(st.ring)/2 {
		d.stale.Inc()
		st.openKnown = false // the sequence moved on (or back) without its parity
		return
	}
	// A group is its base and its geometry: parity that claims a base
	// with another geometry (a stranger's, or an encoder's from before a
	// restart) files a group of its own, so it cannot lock the genuine
	// group out by coming first. Each holds a slot until it completes,
	// is passed by the stream or is evicted: bounded by max_groups.
	var g *group
	for i := range st.groups {
		if x := &st.groups[i]; x.used && x.base == f.base && x.k == f.k && x.m == f.m && x.l == len(f.shard) {
			g = x
			break
		}
	}
	if g == nil {
		g = d.take(st)
		g.used, g.base, g.k, g.m, g.l, g.count, g.missing = true, f.base, f.k, f.m, len(f.shard), 0, 0
		g.have = [MaxParity]bool{}
		st.born++
		g.born = st.born
		st.parityCame(g, d.now())
	}
	if g.have[f.index] {
		d.dupParity.Inc()
		return
	}
	g.have[f.index] = true
	g.parity[f.index] = resize(g.parity[f.index][:0], len(f.shard))
	copy(g.parity[f.index], f.shard)
	g.count++
	d.try(st, g)
	if !g.used || g.count == g.m {
		st.settled(g) // rebuilt, complete, or all its parity came
	}
}

// take returns a free group slot, evicting if need be the oldest group
// ahead of the stream (none of its packets seen: genuine parity follows its
// group, so such a group is whole-group loss or made up), else the oldest.
func (d *Decoder) take(st *decStream) *group {
	var old, ahead *group
	for i := range st.groups {
		g := &st.groups[i]
		if !g.used {
			return g
		}
		if old == nil || g.born < old.born {
			old = g
		}
		if int16(g.base-st.newest) > 0 && (ahead == nil || g.born < ahead.born) {
			ahead = g
		}
	}
	if ahead != nil {
		old = ahead
	}
	d.giveUp(st, old)
	return old
}

// giveUp forgets g, counting its packets still missing: only those the
// stream has passed (a made-up group ahead of the stream counts nothing).
func (d *Decoder) giveUp(st *decStream, g *group) {
	if g.missing > 0 {
		n := 0
		for i := 0; i < g.k; i++ {
			if seq := g.base + uint16(i); int16(seq-st.newest) <= 0 && st.present(seq) == nil {
				n++
			}
		}
		d.unrecoverable.Add(n)
	}
	g.used = false
}

func (d *Decoder) giveUpAll(st *decStream) {
	for i := range st.groups {
		if st.groups[i].used {
			d.giveUp(st, &st.groups[i])
		}
	}
}

// Bounds of the hint: the lag is at most maxLag (beyond it a gap is
// better repaired); parity is "arriving" while some came within
// parityFresh; lagMargin covers the scheduling of two busy processes (a
// longer hold costs little: a gap is asked at once when its group's
// parity has come and not rebuilt it, so the hold runs out only when that
// parity is lost or late).
const (
	maxLag      = 500 * time.Millisecond
	parityFresh = time.Second
	lagMargin   = 10 * time.Millisecond
)

// parityCame notes the first parity of group g at now: it measures how long
// after the group's first packet parity comes, and opens g: the groups
// before it are settled (parity follows its group). g itself stays open
// until settled: a later parity of it may still rebuild what this one
// could not.
func (st *decStream) parityCame(g *group, now int64) {
	st.lastParity = now
	end := g.base + uint16(g.k)
	if st.openKnown && int16(end-st.openFrom) <= 0 {
		return // a group settled already (its other parity, or parity late)
	}
	first := int64(0)
	for i := 0; i < g.k; i++ {
		if s := &st.ring[int(g.base+uint16(i))%len(st.ring)]; s.ok && s.seq == g.base+uint16(i) && (first == 0 || s.at < first) {
			first = s.at
		}
	}
	if first != 0 {
		if d := min(max(time.Duration(now-first), 0), maxLag); !st.lagOK {
			st.lag, st.lagVar, st.lagOK = d, d/2, true
		} else {
			st.lagVar += (abs(st.lag-d) - st.lagVar) / 4
			st.lag += (d - st.lag) / 8
		}
	}
	if !st.openKnown || int16(g.base-st.openFrom) > 0 {
		st.open(g.base)
	}
}

// settled moves the open group past g: g was rebuilt or is complete, or
// all its parity came; its gaps left are for repair.
func (st *decStream) settled(g *group) {
	if end := g.base + uint16(g.k); !st.openKnown || int16(end-st.openFrom) > 0 {
		st.open(end)
	}
}

// open makes the group from from on the open one.
func (st *decStream) open(from uint16) {
	st.openFrom, st.openAt, st.openKnown = from, 0, true
	// The open group's first packet may be here already.
	for seq := from; int16(seq-st.newest) <= 0 && uint16(seq-from) < MaxGroup*2; seq++ {
		if s := &st.ring[int(seq)%len(st.ring)]; s.ok && s.seq == seq && (st.openAt == 0 || s.at < st.openAt) {
			st.openAt = s.at
		}
	}
}

// hint is what rtp-reorder is told with a packet passed at now: while
// parity arrives, a gap in the open group waits until that group's parity
// is due (lag + 4 deviations + a margin after its first packet, capped); a gap before
// it is past FEC.
func (st *decStream) hint(now int64) core.FECHint {
	if !st.lagOK || !st.openKnown || time.Duration(now-st.lastParity) > parityFresh {
		return core.FECHint{}
	}
	hold := min(st.lag+4*st.lagVar+lagMargin, maxLag)
	if st.openAt != 0 {
		// (bounded both ways: a clock that went back cannot lengthen it)
		hold = min(max(time.Duration(st.openAt-now)+hold, 0), hold)
	}
	return core.FECHint{Hold: hold, From: st.openFrom, On: true}
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// present returns the kept source packet seq, or nil.
func (st *decStream) present(seq uint16) []byte {
	if s := &st.ring[int(seq)%len(st.ring)]; s.ok && s.seq == seq {
		return s.data
	}
	return nil
}

// try recovers g's missing source packets when enough of the group is in.
func (d *Decoder) try(st *decStream, g *group) {
	missing := 0
	for i := 0; i < g.k; i++ {
		if st.present(g.base+uint16(i)) == nil {
			missing++
		}
	}
	g.missing = missing
	if missing == 0 {
		g.used = false // complete: its parity is no longer needed
		return
	}
	if missing > g.count {
		return
	}
	shards := st.shards[:g.k+g.m]
	for i := 0; i < g.k; i++ {
		st.scratch[i] = resize(st.scratch[i][:0], g.l)
		b := st.present(g.base + uint16(i))
		if b == nil {
			shards[i] = st.scratch[i][:0] // the codec rebuilds it in place
			continue
		}
		if len(b) > g.l-shardPrefix { // no genuine parity is shorter than its group's packets
			d.junk.Inc()
			g.used, g.missing = false, 0
			return
		}
		s := st.scratch[i][:g.l]
		putShard(s, b)
		clear(s[shardPrefix+len(b):])
		shards[i] = s
	}
	for j := 0; j < g.m; j++ {
		if g.have[j] {
			shards[g.k+j] = g.parity[j][:g.l]
		} else {
			shards[g.k+j] = nil
		}
	}
	codec := d.codec(g.k, g.m)
	if codec == nil || codec.ReconstructData(shards) != nil {
		d.junk.Inc()
		g.used, g.missing = false, 0
		return
	}
	for i := 0; i < g.k; i++ {
		seq := g.base + uint16(i)
		if st.present(seq) != nil {
			continue
		}
		pkt, ok := unshard(shards[i], st.ssrc, seq)
		if !ok {
			d.junk.Inc()
			continue
		}
		now := d.now()
		d.source(st, pkt, seq, st.ssrc, now)
		p := core.NewPacket(len(pkt))
		copy(p.Data, pkt)
		_, _, ts, _, _ := rtpFields(pkt)
		p.Stream, p.Timestamp, p.Ingest = st.stream, ts, d.env.Clock.Now().UnixNano()
		// rtp-reorder reports it lost: the path's loss is before FEC. No
		// FEC hint: the group's other rebuilt packets follow it, and the
		// next source packet says the group is settled.
		p.Rebuilt = true
		d.recovered.Inc()
		d.out.Emit(p)
	}
	g.used, g.missing = false, 0
}

// unshard checks a recovered shard and returns the packet in it: a length
// that fits, zero padding, an RTP header of the protected SSRC and the
// expected sequence number. Anything else came from bad parity.
func unshard(s []byte, ssrc uint32, seq uint16) ([]byte, bool) {
	if len(s) < shardPrefix {
		return nil, false
	}
	n := int(binary.BigEndian.Uint16(s))
	if n < rtpHeader || n > len(s)-shardPrefix {
		return nil, false
	}
	for _, b := range s[shardPrefix+n:] {
		if b != 0 {
			return nil, false
		}
	}
	pkt := s[shardPrefix : shardPrefix+n]
	_, q, _, src, ok := rtpFields(pkt)
	if !ok || q != seq || src != ssrc {
		return nil, false
	}
	return pkt, true
}

func (d *Decoder) codec(k, m int) reedsolomon.Encoder {
	key := [2]int{k, m}
	if c, ok := d.codecs[key]; ok {
		return c
	}
	c, err := newCodec(k, m)
	if err != nil {
		d.env.Log.Warn("fec-decoder: codec", "k", k, "m", m, "err", err)
		return nil
	}
	if len(d.codecs) >= maxCodecs {
		clear(d.codecs) // a stranger's odd (k, m) pairs: keep the set small
	}
	d.codecs[key] = c
	return c
}

// maxCodecs bounds the decoder's codecs by (k, m): a cloud uses a few.
const maxCodecs = 16
