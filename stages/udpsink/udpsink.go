// Package udpsink is the udp-sink stage: it sends RTP packets to unicast and
// multicast destinations in batches, with RTCP stream announcements muxed in.
package udpsink

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/announce"
	"github.com/mediapipe/mediapipe/core/media/fecparity"
	"github.com/mediapipe/mediapipe/core/media/rtpheader"
	"github.com/mediapipe/mediapipe/internal/udpbatch"
	"github.com/mediapipe/mediapipe/stages/internal/sockbuf"
)

// Config is udp-sink's parameters.
type Config struct {
	Destinations      []string      `param:"destinations" required:"true" addr:"true" live:"true" doc:"where every packet goes: unicast and/or multicast group addresses as host:port, IPv4 or IPv6 ([ff15::1]:5222). On a reload, a kept destination keeps its socket and misses no packet, an added one gets packets from the next batch on (every stream's SR+SDES right after it), a removed one none after the batch under way; one that cannot be opened refuses the whole change"`
	TTL               int           `param:"ttl" default:"1" min:"0" max:"255" doc:"multicast TTL (IPv6 hop limit); 1 keeps packets on the local network, raise it to cross multicast routers"`
	Interface         string        `param:"interface" doc:"network interface multicast leaves by (e.g. eth0); empty: the routing table decides"`
	MulticastLoopback bool          `param:"multicast_loopback" default:"true" doc:"deliver multicast to receivers on this host too"`
	Batch             int           `param:"batch" default:"64" min:"1" max:"1024" doc:"most datagrams handed to the kernel per sendmmsg"`
	BatchWait         time.Duration `param:"batch_wait" default:"0s" min:"0" max:"0.01" doc:"once a packet is queued and the input is momentarily empty, wait at most this long for more to fill the batch before sending (bounds the latency added per packet); 0 sends whatever is queued at once"`
	GSO               bool          `param:"gso" default:"true" doc:"send each run of equal-size datagrams to a unicast destination as one UDP_SEGMENT (GSO) message, a batch's runs and lone datagrams together in one sendmmsg (Linux 4.18+; falls back to a message per datagram by itself where the kernel or device refuses); false: always a message per datagram"`
	Pace              int           `param:"pace" default:"0" min:"0" live:"true" doc:"bytes/s at which each stream's bursts (a keyframe's fragments) are spread, per stream: a token bucket of 1 ms at this rate (at least 6000 bytes) lets packets within it go at once and holds the rest, at most 100 ms at this rate (64 KiB … 1 MiB) per stream, past which the oldest go at once (counted as pace_overrun). The transmission controller sets each stream's pace itself (docs/control.md), overriding this. A pace in effect is never below 64000 bytes/s nor below the stream's own rate over the last second (slower, a stream could not be carried). 0: no pacing. Live on reload, from each stream's next packet"`
	WriteBuffer       int           `param:"write_buffer" default:"4194304" min:"0" doc:"socket send buffer in bytes (SO_SNDBUF; the kernel may cap it); 0 keeps the system default"`
}

// Validate checks the destinations' shape; Open resolves them.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Destinations) == 0 {
		errs = append(errs, errors.New("destinations: give at least one host:port"))
	}
	for _, d := range c.Destinations {
		host, port, err := net.SplitHostPort(d)
		if err != nil {
			errs = append(errs, fmt.Errorf("destinations: %q: %w", d, err))
			continue
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			errs = append(errs, fmt.Errorf("destinations: %q: port must be 1-65535", d))
		}
		if host == "" {
			errs = append(errs, fmt.Errorf("destinations: %q: host is missing", d))
		}
	}
	return errors.Join(errs...)
}

// sample is an example [[pipeline.stage]] block for this stage, carried in
// its spec; stages/all checks that it validates.
//
//go:embed sample.toml
var sample string

func init() {
	core.Register(core.Spec{
		Name:    "udp-sink",
		Summary: "sends each RTP packet to every destination, unicast or multicast, in batches; RTCP SR+SDES (stream name) and BYE muxed on the same addresses",
		In:      core.KindRTP,
		Out:     core.KindNone,
		Sample:  sample,
	}, New)
}

// announceEvery is how often each stream's SR+SDES is repeated (docs/protocol.md).
const announceEvery = time.Second

// errLogEvery bounds how often a failing destination is logged.
const errLogEvery = 10 * time.Second

// Stage is a udp-sink.
type Stage struct {
	cfg   Config
	env   *core.Env
	cname string

	// dests is the set every flush sends to. Reconfigure swaps in a new
	// set whole, so the send path takes one atomic load and no lock; cur is
	// the set Run last adopted.
	dests atomic.Pointer[destSet]
	cur   *destSet
	// announceNew: the set just adopted has destinations that have not
	// been told the streams' names yet.
	announceNew bool

	// reconf serialises Open and Reconfigure (which dial outside mu); mu
	// guards what Run and Reconfigure share: destinations dropped from the
	// set, which Run closes once it no longer sends to them, and whether
	// Run has ended.
	reconf  sync.Mutex
	ifi     *net.Interface
	mu      sync.Mutex
	retired []*dest
	closed  bool

	// the batch being built: datagrams in send order, and the packets to
	// release once it is sent.
	bufs [][]byte
	pkts []*core.Packet

	// the batch cut into GSO runs (built by flush when a destination can use
	// them); the GSO runs' datagrams laid end to end in gsoBuf, runBuf
	// holding each run's bytes (a message's Buffers is runBuf[r.buf:r.buf+1]),
	// and each run's UDP_SEGMENT control message laid end to end in oob.
	runs   []run
	gsoBuf []byte
	runBuf [][]byte
	oob    []byte

	now time.Time // read once per wake-up, not per packet

	// wait bounds how long a partial batch waits for more input; one timer
	// for the stage's life, so waiting allocates nothing.
	wait time.Duration

	// batches and batched count flushed batches and the datagrams in them
	// (tests and benchmarks read the average batch size from these).
	batches, batched int
	gsoSends         int // GSO messages the kernel took (tests)
	sendCalls        int // sendmmsg calls made, failed ones too (tests, benchmarks)

	streams    map[*core.Stream]*streamState
	lastStream *core.Stream
	lastState  *streamState

	// Pacing (pace.go). SetPace and Reconfigure leave new paces in paceNew
	// and staticPace and raise paceDirty; Run takes them up before its
	// next packet. holding lists the streams with packets held; paced
	// counts the paced streams, so an unpaced sink never reads the clock
	// for pacing; wall is the wall clock at this wake-up (pacing bounds
	// real time, like batch_wait).
	paceMu      sync.Mutex
	paceNew     map[*core.Stream]float64
	paceDirty   atomic.Bool
	staticPace  atomic.Int64
	static      float64
	holding     []*streamState
	paced       int
	paceArmed   bool
	wall        time.Time
	measuredAt  time.Time // wall at the last measurePace
	paceHeld    prometheus.Counter
	paceOverrun prometheus.Counter

	sendErr  *core.DropCounter
	badRTP   *core.DropCounter
	sent     prometheus.Counter
	rtcpSent prometheus.Counter
	active   prometheus.Gauge
}

// destSet is one immutable list of destinations: a kept destination's
// *dest goes into the next set as it is (its socket and error state stay).
type destSet struct{ dests []*dest }

// dest is one destination; after Open or Reconfigure made it, only Run
// touches its fields.
type dest struct {
	addr  string
	raddr *net.UDPAddr
	conn  *net.UDPConn
	w     *udpbatch.Writer
	// msgs is the sendmmsg being built and spans the datagrams (bufs
	// indexes) each of its messages carries.
	msgs  []udpbatch.Message
	spans []span
	gso   bool // false: one message per datagram
	// gsoMax: segments this large or larger were refused (path MTU); 0: no limit seen
	gsoMax int

	failing  bool
	burst    int // errors since the burst began or was last logged
	lastLog  time.Time
	lastFail time.Time
}

type streamState struct {
	ssrc     uint32
	known    bool  // ssrc learned from a packet
	pt       uint8 // the media's payload type, learned with ssrc
	packets  uint32
	octets   uint32
	lastTS   uint32
	lastWall time.Time
	ann      []byte // this stream's current RTCP datagram

	unnamable bool // name refused by SDES; logged once

	pc pacer
}

// New builds a udp-sink; Open resolves and opens the sockets.
func New(cfg *Config, env *core.Env) (core.Stage, error) {
	return newStage(cfg, env), nil
}

func newStage(cfg *Config, env *core.Env) *Stage {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	cname := "mediapipe@" + host
	if len(cname) > announce.MaxNameLen {
		cname = cname[:announce.MaxNameLen]
	}
	s := &Stage{
		cfg:      *cfg,
		env:      env,
		cname:    cname,
		bufs:     make([][]byte, 0, cfg.Batch),
		oob:      make([]byte, 0, (cfg.Batch/2+1)*gsoCmsgSpace), // a GSO run has 2 datagrams or more
		pkts:     make([]*core.Packet, 0, cfg.Batch),
		wait:     cfg.BatchWait,
		streams:  map[*core.Stream]*streamState{},
		sendErr:  env.Metrics.Drop("send_error"),
		badRTP:   env.Metrics.Drop("bad_rtp"),
		sent:     env.Metrics.Counter("datagrams_sent"),
		rtcpSent: env.Metrics.Counter("rtcp_sent"),
		active:   env.Metrics.Gauge("streams"),
		paceNew:  map[*core.Stream]float64{},

		paceHeld:    env.Metrics.Counter("pace_held"),
		paceOverrun: env.Metrics.Counter("pace_overrun"),
	}
	s.staticPace.Store(int64(cfg.Pace))
	s.static = float64(cfg.Pace)
	return s
}

// sockOpts are what control (sockopt_*.go) sets on a destination's socket.
type sockOpts struct {
	sndbuf    int
	multicast bool
	ttl       int
	loop      bool
	ifi       *net.Interface
}

// Open resolves every destination and opens one connected socket for each,
// multicast options set before connecting (the kernel fixes the route then).
func (s *Stage) Open(ctx context.Context) error {
	s.reconf.Lock()
	defer s.reconf.Unlock()
	if s.cfg.Interface != "" {
		var err error
		if s.ifi, err = net.InterfaceByName(s.cfg.Interface); err != nil {
			return fmt.Errorf("udp-sink: interface %q: %w", s.cfg.Interface, err)
		}
	}
	dests, err := s.openAll(ctx, s.cfg.Destinations)
	if err != nil {
		return err
	}
	s.dests.Store(&destSet{dests: dests})
	return nil
}

// openAll opens a socket for each address, or none: on an error it closes
// those it opened.
func (s *Stage) openAll(ctx context.Context, addrs []string) ([]*dest, error) {
	dests := make([]*dest, 0, len(addrs))
	for _, addr := range addrs {
		d, err := s.openDest(ctx, addr)
		if err != nil {
			closeDests(dests)
			return nil, err
		}
		dests = append(dests, d)
	}
	return dests, nil
}

// openDest resolves addr and opens its connected socket.
func (s *Stage) openDest(ctx context.Context, addr string) (*dest, error) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("udp-sink: destination %q: %w", addr, err)
	}
	opts := sockOpts{sndbuf: s.cfg.WriteBuffer}
	if raddr.IP.IsMulticast() {
		opts.multicast, opts.ttl, opts.loop, opts.ifi = true, s.cfg.TTL, s.cfg.MulticastLoopback, s.ifi
	}
	network := "udp4"
	if raddr.IP.To4() == nil {
		network = "udp6"
	}
	dl := net.Dialer{Control: opts.control}
	c, err := dl.DialContext(ctx, network, raddr.String())
	if err != nil {
		return nil, fmt.Errorf("udp-sink: destination %q: %w", addr, err)
	}
	conn := c.(*net.UDPConn)
	if s.cfg.WriteBuffer > 0 {
		if got, ok := sockbuf.Send(conn); ok && got < s.cfg.WriteBuffer {
			s.env.Log.Info("udp-sink: kernel capped the send buffer", "destination", addr, "asked", s.cfg.WriteBuffer, "got", got)
		}
	}
	// A message per datagram at most; a message's Buffers alias the batch.
	d := &dest{addr: addr, raddr: raddr, conn: conn, w: udpbatch.NewWriter(conn),
		msgs: make([]udpbatch.Message, 0, s.cfg.Batch), spans: make([]span, 0, s.cfg.Batch)}
	// Multicast keeps one message per datagram: GSO with multicast loopback
	// is untested here.
	if s.cfg.GSO && !raddr.IP.IsMulticast() {
		d.gso = gsoSupported(conn)
	}
	s.env.Log.Info("udp-sink: sending", "destination", addr, "resolved", raddr.String(), "multicast", raddr.IP.IsMulticast(), "gso", d.gso, "local", conn.LocalAddr().String())
	return d, nil
}

func closeDests(ds []*dest) {
	for _, d := range ds {
		_ = d.conn.Close()
	}
}

// reconfigureTimeout bounds resolving and opening new destinations.
const reconfigureTimeout = 10 * time.Second

// Reconfigure applies a new destinations list while Run runs (the other
// parameters are not live). Kept destinations keep their socket; new ones
// are opened here, off the data path, and the new set is swapped in whole;
// Run closes the removed ones' sockets once it no longer sends to them. If a
// new destination cannot be opened, nothing changes.
func (s *Stage) Reconfigure(cfg *Config) error {
	s.reconf.Lock()
	defer s.reconf.Unlock()
	// The host calls this only when live parameters changed; anything
	// else asks for a restart rather than being ignored.
	was, now := s.cfg, *cfg
	was.Destinations, now.Destinations = nil, nil
	was.Pace, now.Pace = 0, 0
	if !reflect.DeepEqual(was, now) {
		return fmt.Errorf("udp-sink: only destinations and pace change in place: %w", core.ErrNotLive)
	}
	if cfg.Pace != s.cfg.Pace {
		s.cfg.Pace = cfg.Pace
		s.staticPace.Store(int64(cfg.Pace))
		s.paceDirty.Store(true)
	}
	cur := s.dests.Load()
	if cur == nil { // not opened yet: Open takes the new list
		s.cfg.Destinations = slices.Clone(cfg.Destinations)
		return nil
	}
	// Kept destinations by address; a list may name one twice (it then
	// gets every packet twice), so each address holds a queue.
	keep := map[string][]*dest{}
	for _, d := range cur.dests {
		keep[d.addr] = append(keep[d.addr], d)
	}
	next := make([]*dest, 0, len(cfg.Destinations))
	var opened []*dest
	ctx, cancel := context.WithTimeout(context.Background(), reconfigureTimeout)
	defer cancel()
	for _, addr := range cfg.Destinations {
		if q := keep[addr]; len(q) > 0 {
			next = append(next, q[0])
			keep[addr] = q[1:]
			continue
		}
		d, err := s.openDest(ctx, addr)
		if err != nil {
			closeDests(opened)
			return err
		}
		opened = append(opened, d)
		next = append(next, d)
	}
	var removed []*dest
	for _, q := range keep {
		removed = append(removed, q...)
	}
	s.mu.Lock()
	if s.closed { // Run has ended: nothing sends any more
		s.mu.Unlock()
		closeDests(opened)
		return nil
	}
	s.retired = append(s.retired, removed...)
	s.dests.Store(&destSet{dests: next})
	s.mu.Unlock()
	s.cfg.Destinations = slices.Clone(cfg.Destinations)
	for _, d := range removed {
		s.env.Log.Info("udp-sink: destination removed", "destination", d.addr)
	}
	return nil
}

// adopt makes the newest destination set the one Run sends to, and closes
// the sockets of destinations dropped since: Run sends to no other set, so
// nothing writes to them any more. It runs only when the set changed.
func (s *Stage) adopt() {
	s.mu.Lock()
	// Loaded under mu: every destination retired so far is out of this set.
	set := s.dests.Load()
	retired := s.retired
	s.retired = nil
	s.mu.Unlock()
	closeDests(retired)
	if s.cur != nil {
		for _, d := range set.dests {
			if !slices.Contains(s.cur.dests, d) {
				s.announceNew = true
				break
			}
		}
	}
	s.cur = set
}

// closeAll closes every socket, the current set's and those retired, and
// makes later Reconfigure calls do nothing.
func (s *Stage) closeAll() {
	s.mu.Lock()
	s.closed = true
	set := s.dests.Load()
	retired := s.retired
	s.retired = nil
	s.mu.Unlock()
	if set != nil {
		closeDests(set.dests)
	}
	closeDests(retired)
}

// LocalAddrs returns the local address of each destination's socket, in
// the order of destinations.
func (s *Stage) LocalAddrs() []net.Addr {
	set := s.dests.Load()
	if set == nil {
		return nil
	}
	out := make([]net.Addr, len(set.dests))
	for i, d := range set.dests {
		out[i] = d.conn.LocalAddr()
	}
	return out
}

// Run sends packets until in closes, then says BYE for every stream left.
func (s *Stage) Run(ctx context.Context, in <-chan *core.Packet, _ core.Output) error {
	if s.dests.Load() == nil {
		if err := s.Open(ctx); err != nil {
			return err
		}
	}
	defer s.closeAll()
	timer := s.env.Clock.NewTimer(core.UntilAligned(s.env.Clock.Now(), announceEvery))
	defer timer.Stop()
	// The batch wait is wall time on purpose: it bounds real latency, and a
	// fake clock that nobody advances would hold every partial batch.
	var wait *time.Timer
	if s.wait > 0 {
		wait = time.NewTimer(time.Hour)
		wait.Stop()
		defer wait.Stop()
	}
	// Held packets wait on this one timer (pace.go), wall time too.
	pace := time.NewTimer(time.Hour)
	pace.Stop()
	defer pace.Stop()
	for {
		select {
		case p, ok := <-in:
			if !ok {
				s.finish()
				return nil
			}
			s.now = s.env.Clock.Now()
			if s.paced > 0 || s.static > 0 {
				s.wall = time.Now()
			}
			s.handle(p)
			if !s.gather(in, wait) {
				s.finish()
				return nil
			}
			s.send()
			s.rearm(pace)
		case <-pace.C:
			s.paceArmed = false
			s.now, s.wall = s.env.Clock.Now(), time.Now()
			s.release()
			s.send()
			s.rearm(pace)
		case <-timer.C():
			// The clocks are read here too: rearm below measures the held
			// packets' wait from s.wall, and a stale one would push an
			// armed pace timer later at every tick.
			s.now, s.wall = s.env.Clock.Now(), time.Now()
			// Idle too, a changed set is taken up (and removed
			// destinations' sockets closed) within a second.
			if s.dests.Load() != s.cur {
				s.adopt()
				s.announceNew = false // announceAll tells them now
			}
			if s.paceDirty.Load() { // idle too, paces set are taken up
				s.applyPace()
			}
			s.measurePace()
			s.announceAll()
			s.send()
			s.rearm(pace)
			timer.Reset(core.UntilAligned(s.now, announceEvery))
		}
	}
}

// gather fills the batch from in: first whatever is already queued, then,
// if the batch is still not full and wait is set, whatever arrives within
// s.wait of the queue running dry. One syscall per batch is what udp-sink
// costs, so a fuller batch is cheaper per packet; the wait bounds the
// latency that buys. It reports false when in is closed.
func (s *Stage) gather(in <-chan *core.Packet, wait *time.Timer) bool {
	for len(s.bufs) < s.cfg.Batch {
		select {
		case p, ok := <-in:
			if !ok {
				return false
			}
			s.handle(p)
			continue
		default:
		}
		break
	}
	if wait == nil || len(s.bufs) >= s.cfg.Batch {
		return true
	}
	wait.Reset(s.wait)
	for len(s.bufs) < s.cfg.Batch {
		select {
		case p, ok := <-in:
			if !ok {
				wait.Stop()
				return false
			}
			if s.paced > 0 || s.static > 0 {
				s.wall = time.Now()
			}
			s.handle(p)
		case <-wait.C:
			return true
		}
	}
	wait.Stop()
	return true
}

func (s *Stage) state(st *core.Stream) *streamState {
	if st == s.lastStream && st != nil {
		return s.lastState
	}
	ss := s.streams[st]
	s.lastStream, s.lastState = st, ss
	return ss
}

func (s *Stage) handle(p *core.Packet) {
	if s.paceDirty.Load() {
		s.applyPace()
	}
	switch p.Event {
	case core.EventStart:
		if p.Stream != nil && s.streams[p.Stream] == nil {
			s.streams[p.Stream] = s.newState()
			s.lastStream = nil
			s.active.Set(float64(len(s.streams)))
		}
		p.Release()
		return
	case core.EventEnd:
		if ss := s.streams[p.Stream]; ss != nil {
			s.forget(ss) // its held packets go before its BYE
			s.bye(p.Stream, ss)
			delete(s.streams, p.Stream)
			s.lastStream = nil
			s.active.Set(float64(len(s.streams)))
		}
		p.Release()
		return
	}
	start, end, err := rtpheader.Check(p.Data)
	if err != nil || announce.Classify(p.Data) != announce.RTP {
		s.badRTP.Inc()
		p.Release()
		return
	}
	var ss *streamState
	if p.Stream != nil {
		ss = s.state(p.Stream)
		if ss == nil { // data without a start event: adopt the stream
			ss = s.newState()
			s.streams[p.Stream] = ss
			s.lastStream = nil
			s.active.Set(float64(len(s.streams)))
		}
		ssrc, pt := rtpheader.SSRC(p.Data), rtpheader.PayloadType(p.Data)
		if (!ss.known || pt != ss.pt) && fecparity.Is(p.Data) {
			// Parity opening the stream (an encoder restarted mid-group):
			// not the media, whose SSRC and payload type are learned from
			// the first media packet.
			s.pass(ss, p)
			return
		}
		if ss.known && pt != ss.pt {
			// fec-encoder's parity (its own SSRC and payload type): sent
			// as is, paced with the media; the stream's announced SSRC and
			// report are the media's
			s.pass(ss, p)
			return
		}
		if !ss.known || ss.ssrc != ssrc {
			// The stream's first packet (or a new SSRC): announce first, so a
			// receiver can name the SSRC before any of its RTP arrives.
			// What the stream holds (the old SSRC's) goes before it: a
			// receiver told of the new SSRC takes the old one as ended.
			s.drain(ss)
			*ss = streamState{ssrc: ssrc, pt: pt, known: true, ann: ss.ann, unnamable: ss.unnamable, pc: ss.pc}
			ss.lastTS, ss.lastWall = rtpheader.Timestamp(p.Data), s.now
			s.announce(p.Stream, ss)
		}
		ss.packets++
		ss.octets += uint32(end - start)
		ts := rtpheader.Timestamp(p.Data)
		// Media back after a pause longer than a report interval (a
		// publisher returning within its reconnect_grace continues its
		// timestamps where they stopped, not where the wall clock is):
		// the reports sent meanwhile mapped the timestamps on with the
		// clock, so report again at once with the true mapping, or an
		// edge would date this media a pause too early.
		resumed := s.now.Sub(ss.lastWall) > announceEvery && int32(ts-ss.lastTS) < int32(s.now.Sub(ss.lastWall).Milliseconds())-int32(announceEvery.Milliseconds())
		ss.lastTS = ts
		ss.lastWall = s.now
		if resumed {
			s.pass(ss, p)
			s.announce(p.Stream, ss)
			return
		}
	}
	s.pass(ss, p)
}

// add appends one datagram to the batch, sending the batch first if full.
func (s *Stage) add(b []byte, p *core.Packet) {
	if len(s.bufs) >= s.cfg.Batch {
		s.flush()
	}
	s.bufs = append(s.bufs, b)
	if p != nil {
		s.pkts = append(s.pkts, p)
	}
}

// announce queues st's SR+SDES. The datagram lives in ss.ann, which is not
// rewritten before the batch holding it is sent (announceAll flushes first).
func (s *Stage) announce(st *core.Stream, ss *streamState) {
	now := s.env.Clock.Now()
	sender := announce.Sender{
		SSRC:    ss.ssrc,
		NTP:     announce.NTP(now),
		RTPTime: ss.lastTS + uint32(now.Sub(ss.lastWall).Milliseconds()), // 1 kHz clock: FLV ms
		Packets: ss.packets,
		Octets:  ss.octets,
	}
	if ss.unnamable {
		return
	}
	b, err := announce.AppendAnnounce(ss.ann[:0], sender, s.cname, st.Name)
	if err != nil {
		// Once per stream: its name will not fit SDES any better in a second.
		ss.unnamable = true
		s.env.Log.Warn("udp-sink: stream name cannot be announced; edges will not play it", "stream", st.Name, "err", err)
		return
	}
	ss.ann = b
	s.rtcpSent.Inc()
	s.add(b, nil)
}

func (s *Stage) bye(st *core.Stream, ss *streamState) {
	if !ss.known {
		return
	}
	b, err := announce.AppendBye(nil, ss.ssrc, "stream ended")
	if err != nil {
		s.env.Log.Warn("udp-sink: cannot say bye", "stream", st.Name, "err", err)
		return
	}
	s.rtcpSent.Inc()
	s.add(b, nil)
}

func (s *Stage) announceAll() {
	s.flush() // the batch may still point at announcement buffers
	for st, ss := range s.streams {
		if ss.known {
			s.announce(st, ss)
		}
	}
}

// finish says BYE for streams that never got an end event and sends the rest.
func (s *Stage) finish() {
	for st, ss := range s.streams {
		s.forget(ss) // held packets go before the BYE
		s.bye(st, ss)
	}
	clear(s.streams)
	s.lastStream = nil
	s.active.Set(0)
	s.flush()
}

// send flushes the batch and, if that flush took up a set with new
// destinations, sends every stream's SR+SDES at once: a new edge can name
// the streams without waiting for the next periodic announcement.
func (s *Stage) send() {
	s.flush()
	if s.announceNew {
		s.announceNew = false
		s.announceAll()
		s.flush()
	}
}

// run is bufs[start:end]; oob is where its UDP_SEGMENT control message
// starts in Stage.oob, -1 when it goes datagram by datagram, and buf its
// index in Stage.runBuf.
type run struct{ start, end, oob, buf int }

// span is bufs[start:end], the datagrams one message of a sendmmsg carries:
// one, or a GSO run.
type span struct {
	start, end int
	gso        bool
}

// GSO limits: the kernel takes at most 64 segments and one IP datagram's
// worth of payload per message.
// Datagrams over gsoMaxSeg go one by one: RTP is ~1200 bytes, and a run of
// jumbo datagrams saves little.
const (
	gsoMaxSegs  = 64
	gsoMaxBytes = 65000
	gsoMaxSeg   = 9000
)

// flush sends the batch to every destination. A destination that fails
// loses the message (datagram or GSO run) it failed on; a second failure in
// the same batch gives up on it until the next batch, so a dead destination
// costs two syscalls per batch and never delays the others.
func (s *Stage) flush() {
	if len(s.bufs) == 0 {
		return
	}
	if s.dests.Load() != s.cur {
		s.adopt()
	}
	s.batches++
	s.batched += len(s.bufs)
	s.cutRuns()
	for _, d := range s.cur.dests {
		s.sendTo(d)
	}
	clear(s.bufs) // the destinations' msgs alias these: they now hold nothing
	s.bufs = s.bufs[:0]
	for _, p := range s.pkts {
		p.Release()
	}
	clear(s.pkts)
	s.pkts = s.pkts[:0]
}

// cutRuns splits the batch into runs of equal-size datagrams (the last of a
// run may be shorter) and copies each run of two or more into gsoBuf, with
// its UDP_SEGMENT control message, once for all destinations. The copy pays:
// handing the kernel a run as one iovec per datagram instead costs it more
// (1.4× per datagram on loopback) than the copy costs here.
func (s *Stage) cutRuns() {
	s.runs = s.runs[:0]
	s.oob = s.oob[:0]
	s.gsoBuf = s.gsoBuf[:0]
	clear(s.runBuf)
	s.runBuf = s.runBuf[:0]
	gsoDest := false
	for _, d := range s.cur.dests {
		gsoDest = gsoDest || d.gso
	}
	if !gsoDest {
		return
	}
	for i := 0; i < len(s.bufs); {
		seg := len(s.bufs[i])
		j, total := i+1, seg
		for j < len(s.bufs) && j-i < gsoMaxSegs && total+len(s.bufs[j]) <= gsoMaxBytes && len(s.bufs[j]) <= seg {
			total += len(s.bufs[j])
			j++
			if len(s.bufs[j-1]) < seg {
				break // a shorter datagram ends the run
			}
		}
		r := run{start: i, end: j, oob: -1}
		if j-i > 1 && seg <= gsoMaxSeg {
			r.oob = len(s.oob)
			s.oob = appendGSOCmsg(s.oob, seg)
			off := len(s.gsoBuf)
			for _, b := range s.bufs[i:j] {
				s.gsoBuf = append(s.gsoBuf, b...)
			}
			r.buf = len(s.runBuf)
			s.runBuf = append(s.runBuf, s.gsoBuf[off:])
		}
		s.runs = append(s.runs, r)
		i = j
	}
}

// pack builds d's messages for bufs[from:]: each GSO run d takes as one
// message, every other datagram as its own. from is a run's start or lies in
// a run d sends datagram by datagram.
func (s *Stage) pack(d *dest, from int) {
	d.msgs, d.spans = d.msgs[:0], d.spans[:0]
	one := func(i int) {
		d.msgs = append(d.msgs, udpbatch.Message{Buffers: s.bufs[i : i+1]})
		d.spans = append(d.spans, span{start: i, end: i + 1})
	}
	if !d.gso {
		for i := from; i < len(s.bufs); i++ {
			one(i)
		}
		return
	}
	for _, r := range s.runs {
		if r.end <= from {
			continue
		}
		if seg := len(s.bufs[r.start]); r.oob >= 0 && r.start >= from && (d.gsoMax == 0 || seg < d.gsoMax) {
			d.msgs = append(d.msgs, udpbatch.Message{Buffers: s.runBuf[r.buf : r.buf+1], OOB: s.oob[r.oob : r.oob+gsoCmsgSpace]})
			d.spans = append(d.spans, span{start: r.start, end: r.end, gso: true})
			continue
		}
		for i := max(r.start, from); i < r.end; i++ {
			one(i)
		}
	}
}

// sendTo sends the batch to d, GSO runs and lone datagrams alike in as few
// sendmmsg calls as the kernel allows: one, unless a message fails.
func (s *Stage) sendTo(d *dest) {
	failures := 0
	for from := 0; from < len(s.bufs); {
		s.pack(d, from)
		s.sendCalls++
		n, err := d.w.Write(d.msgs)
		for _, sp := range d.spans[:n] {
			s.sent.Add(float64(sp.end - sp.start))
			if sp.gso {
				s.gsoSends++
			}
		}
		if err == nil {
			break
		}
		failed := d.spans[n]
		if failed.gso && (gsoUnsupported(err) || gsoTooBig(err)) {
			// One size refused (path MTU): stop trying it and larger.
			// Anything else, or a second refusal: no GSO for d. The run
			// goes again, datagram by datagram.
			seg := len(s.bufs[failed.start])
			if gsoTooBig(err) && d.gsoMax == 0 {
				d.gsoMax = seg
			} else {
				d.gso = false
			}
			s.env.Log.Info("udp-sink: GSO refused; sending datagram by datagram", "destination", d.addr, "segment", seg, "err", err)
			from = failed.start
			continue
		}
		failures++
		from = failed.end
		if failures > 1 { // give up on d for this batch
			from = len(s.bufs)
		}
		s.noteError(d, err, from-failed.start)
	}
	// A refused destination fails one send per ICMP error and lets the
	// next through, so it counts as recovered only after a quiet spell.
	if failures == 0 && d.failing && time.Since(d.lastFail) >= errLogEvery {
		d.failing = false
		s.env.Log.Info("udp-sink: destination recovered", "destination", d.addr, "lost", d.burst)
		d.burst = 0
	}
}

// noteError counts lost datagrams; it logs when a destination starts failing
// and then at most every errLogEvery, never per packet.
func (s *Stage) noteError(d *dest, err error, lost int) {
	s.sendErr.Add(lost)
	d.burst += lost
	now := time.Now()
	d.lastFail = now
	switch {
	case !d.failing:
		d.failing = true
		d.lastLog = now
		s.env.Log.Warn("udp-sink: destination failing", "destination", d.addr, "err", err)
	case now.Sub(d.lastLog) >= errLogEvery:
		d.lastLog = now
		s.env.Log.Warn("udp-sink: destination still failing", "destination", d.addr, "lost", d.burst, "err", err)
		d.burst = 0
	}
}
