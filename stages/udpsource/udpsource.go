// Package udpsource is the udp-source stage: it receives RTP (unicast or a
// multicast group) and names streams from the RTCP SDES muxed beside it.
//
// Each SSRC is bound to the address its first datagram came from: only that
// address's RTP, SR, SDES and BYE count for it, and a stream starts only once
// a named SSRC has delivered RTP. A new SSRC takes an existing name over
// when it comes from the owner's address (the publisher reconnected) or the
// owner has sent no RTP for a while (the cloud restarted, or the publisher
// went over to a standby cloud), never from a stranger while the owner is
// sending media. A takeover continues the same core.Stream (no end, no
// start downstream), so viewers keep playing; flv-reassembler continues its
// timestamps.
package udpsource

import (
	"context"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/announce"
	"github.com/mediapipe/mediapipe/core/media/rtpheader"
	"github.com/mediapipe/mediapipe/internal/udpbatch"
	"github.com/mediapipe/mediapipe/stages/internal/sockbuf"
)

// Config is udp-source's parameters.
type Config struct {
	Listen        string        `param:"listen" required:"true" addr:"true" doc:"host:port to receive on; a multicast group address (239.1.1.1:5222, [ff15::1]:5222) joins that group"`
	Interface     string        `param:"interface" doc:"network interface to join the multicast group on (e.g. eth0); empty: the routing table decides"`
	ReadBuffer    int           `param:"read_buffer" default:"4194304" min:"0" doc:"socket receive buffer in bytes (SO_RCVBUF); logged when the kernel grants less; 0 keeps the system default"`
	Batch         int           `param:"batch" default:"64" min:"1" max:"1024" doc:"most datagrams read per recvmmsg"`
	PayloadType   int           `param:"payload_type" default:"100" min:"96" max:"127" doc:"RTP payload type of the streams; other payload types are dropped and counted"`
	StreamTimeout time.Duration `param:"stream_timeout" default:"5s" min:"0.01" doc:"a stream silent (no RTP nor RTCP) this long ends. A cloud waiting out its publisher's reconnect_grace keeps announcing the stream (RTCP SR every second), so the pause does not end it here; a new sender of a live name (a standby cloud) takes it over, continuing it, once the old one has sent no RTP for takeover_quiet"`
	TakeoverQuiet time.Duration `param:"takeover_quiet" default:"2s" min:"0.01" max:"60" doc:"how long a live stream's sender must have sent no RTP before a new SSRC of its name from another address (a restarted cloud, a standby cloud the publisher came back through) takes the name over and continues the stream; until then the newcomer's packets are held (for this plus 1 s at most) and a stranger cannot take over a stream that plays. Keep it below the cloud's reconnect_grace, during which the old cloud still announces the stream. With senders empty, anyone may take over a name paused this long: list the clouds in senders"`
	ParityType    int           `param:"fec_payload_type" default:"0" min:"0" max:"127" doc:"RTP payload type of fec-encoder's parity packets, when a fec-decoder follows: each is passed on the stream whose SSRC its FEC header protects (from that stream's sender), else dropped and counted (parity_no_stream). 0: parity is dropped like any other payload type (bad_payload_type), so an edge without the decoder ignores it"`
	UnnamedHold   time.Duration `param:"unnamed_hold" default:"2s" min:"0" doc:"how long packets of an SSRC no SDES has named yet are held before being dropped; 0 drops them at once"`
	MaxStreams    int           `param:"max_streams" default:"1000" min:"1" doc:"most streams live at once; the packets of a named SSRC beyond it are dropped and counted (too_many_streams)"`
	Senders       []string      `param:"senders" doc:"addresses allowed to send streams: IPs or CIDR prefixes (10.0.0.5, 10.0.0.0/24, 2001:db8::/32; for multicast the source address), normally the cloud's udp-sink host; datagrams from any other address are dropped and counted (sender_not_allowed); empty: anyone, each address capped by max_streams_per_sender, and any address may take over a stream paused for takeover_quiet (list every cloud, standbys too)"`
	PerSender     int           `param:"max_streams_per_sender" default:"64" min:"0" doc:"most streams live at once from one IP address not listed in senders (with senders empty: from any one address, the cloud too); the packets of a named SSRC beyond it are dropped and counted (too_many_from_sender), so one stranger cannot fill max_streams; a cloud relaying more streams than this is listed in senders; 0: no cap"`
}

// Validate checks listen's and senders' shapes.
func (c *Config) Validate() error {
	if c.ParityType != 0 && (c.ParityType < 96 || c.ParityType == c.PayloadType) {
		return fmt.Errorf("fec_payload_type: %d must be 96-127 and differ from payload_type", c.ParityType)
	}
	_, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("listen: %q: %w", c.Listen, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("listen: %q: port must be 0-65535", c.Listen)
	}
	_, err = parseSenders(c.Senders)
	return err
}

// parseSenders reads senders: each an IP (a /32 or /128) or a CIDR prefix.
func parseSenders(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, v := range list {
		var p netip.Prefix
		var err error
		if strings.Contains(v, "/") {
			p, err = netip.ParsePrefix(v)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(v); err == nil {
				a = a.Unmap()
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			return nil, fmt.Errorf("senders: %q is neither an IP nor a CIDR prefix: %w", v, err)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// sample is an example [[pipeline.stage]] block for this stage, carried in
// its spec; stages/all checks that it validates.
//
//go:embed sample.toml
var sample string

func init() {
	core.Register(core.Spec{
		Name:    "udp-source",
		Summary: "receives RTP over UDP, unicast or by joining a multicast group; RTCP SDES names each SSRC's stream, BYE or silence ends it",
		In:      core.KindNone,
		Out:     core.KindRTP,
		Sample:  sample,
	}, New)
}

// Bounds on what strangers can make the stage keep.
const (
	maxPending   = 16   // SSRCs waiting for a name or their first RTP at once, per class (below)
	maxHeld      = 1024 // packets held per unnamed SSRC (about 1 s of a 10 Mb/s stream)
	maxHeldTotal = 4096 // packets held over all unnamed SSRCs (8 MiB of buffers)
	maxRetired   = 256  // SSRCs remembered as ended (BYE, replaced)
	slotSize     = 2048 // first iovec: a pooled packet buffer, fits any default-sized datagram
	maxDatagram  = 65536
	errorsToQuit = 1000        // consecutive read errors that end Run
	capLogEvery  = time.Minute // at most one line this often on senders over max_streams_per_sender

	// namedHold is how long (at least) an SSRC named by SDES waits for its
	// first RTP, which the cloud sends right after its announcement, or for
	// its name to be free: longer than takeoverQuiet, so a restarted
	// cloud's held packets are still there when the old sender counts as
	// gone.
	namedHold = 3 * time.Second
	// takeoverQuiet (takeover_quiet's default) is how long a stream's sender must have sent no RTP
	// before a new SSRC from another address may take its name (a
	// restarted cloud sends from a new port, a standby cloud from another
	// host); a live sender is never silent that long, so a stranger cannot
	// take a stream over while it plays. Its SR keep-alives do not count:
	// a cloud whose publisher left keeps announcing for its
	// reconnect_grace, and the publisher may come back through a standby.
	takeoverQuiet = 2 * time.Second
)

// Stage is a udp-source.
type Stage struct {
	cfg     Config
	env     *core.Env
	allowed []netip.Prefix // senders; empty: anyone

	conn  *net.UDPConn
	kd    *dropReader // reads the kernel's drop count of conn
	kdrop uint32      // the kernel's drop count last read
	r     *udpbatch.Reader
	msgs  []udpbatch.Message
	from  []netip.AddrPort // sender of msgs[i]
	slots []*core.Packet   // slot i's packet; msgs[i].Buffers[0] is its buffer
	over  [][]byte         // msgs[i].Buffers[1]: room for datagrams over slotSize

	sources map[uint32]*source
	names   map[string]*source // live streams by name
	senders map[netip.AddrPort]int
	perIP   map[netip.Addr]int // live streams by sender IP, for max_streams_per_sender
	retired map[uint32]time.Time
	// SSRCs not live yet, from addresses that send a live stream (the
	// cloud) and from others: strangers filling their share cannot keep
	// the cloud's next stream out. At most maxPending each.
	pending [2][]*source
	held    int // packets held over all pending sources; heldGauge once a batch
	report  announce.Report

	junk, badPT, unnamed, foreign *core.DropCounter
	parityOrphan                  *core.DropCounter
	tooMany, nameTaken, full      *core.DropCounter
	notAllowed, overCap           *core.DropCounter
	overflow                      *core.DropCounter // datagrams the kernel dropped, the socket buffer full
	refusal                       *core.DropCounter // why the last start was refused: tooMany or overCap
	capLogged                     time.Time         // last line about a sender over its cap
	capRefused                    int               // starts refused over a sender's cap since that line
	started, ended, continued     prometheus.Counter
	active, heldGauge             prometheus.Gauge
}

// source is one SSRC: pending (stream nil: not named yet, or named and
// waiting for its first RTP or for its name to be free) or live.
type source struct {
	ssrc      uint32
	from      netip.AddrPort // the only address that speaks for this SSRC
	known     bool           // from an address that sent a live stream then: its pending class
	name      string         // from its SDES; "" until named
	stream    *core.Stream
	firstSeen time.Time
	lastSeen  time.Time
	lastRTP   time.Time // lastSeen by RTP alone: a takeover looks at this
	held      []*core.Packet
	hits      int  // datagrams taken while pending
	refused   bool // its start was refused because the name is taken
	capped    bool // its start was refused for max_streams_per_sender: first to be evicted
}

// New builds a udp-source; Open binds it.
func New(cfg *Config, env *core.Env) (core.Stage, error) {
	allowed, err := parseSenders(cfg.Senders)
	if err != nil {
		return nil, err
	}
	s := newStage(cfg, env)
	s.allowed = allowed
	return s, nil
}

func newStage(cfg *Config, env *core.Env) *Stage {
	return &Stage{
		cfg:     *cfg,
		env:     env,
		sources: map[uint32]*source{},
		names:   map[string]*source{},
		senders: map[netip.AddrPort]int{},
		perIP:   map[netip.Addr]int{},
		retired: map[uint32]time.Time{},
		junk:    env.Metrics.Drop("junk"),
		badPT:   env.Metrics.Drop("bad_payload_type"),
		unnamed: env.Metrics.Drop("unnamed_ssrc"),
		// parity protecting no live stream of its sender
		parityOrphan: env.Metrics.Drop("parity_no_stream"),
		foreign:      env.Metrics.Drop("wrong_sender"),
		tooMany:      env.Metrics.Drop("too_many_streams"),
		// datagrams from an address not in senders
		notAllowed: env.Metrics.Drop("sender_not_allowed"),
		// packets of a named SSRC whose sender has max_streams_per_sender live
		overCap: env.Metrics.Drop("too_many_from_sender"),
		// datagrams the kernel dropped before udp-source could read them
		overflow: env.Metrics.Drop("socket_overflow"),
		// packets held for a new SSRC whose name stayed taken
		nameTaken: env.Metrics.Drop("name_taken"),
		// SDES of a new SSRC while too many wait already
		full:    env.Metrics.Drop("pending_full"),
		started: env.Metrics.Counter("streams_started"),
		ended:   env.Metrics.Counter("streams_ended"),
		// streams a new SSRC took over and continued
		continued: env.Metrics.Counter("streams_continued"),
		active:    env.Metrics.Gauge("streams"),
		// packets held for SSRCs not live yet
		heldGauge: env.Metrics.Gauge("held_packets"),
	}
}

// sockOpts are what control (sockopt_*.go) sets before bind: the receive
// buffer, and SO_REUSEADDR for multicast so several receivers on one host can
// share the group's port.
type sockOpts struct {
	rcvbuf int
	reuse  bool
}

// Open binds the socket (and joins the group when listen is multicast), so
// an address in use fails before anything runs.
func (s *Stage) Open(ctx context.Context) error {
	if s.conn != nil {
		return nil
	}
	addr, err := net.ResolveUDPAddr("udp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("udp-source: listen %q: %w", s.cfg.Listen, err)
	}
	network := "udp4"
	if addr.IP != nil && addr.IP.To4() == nil {
		network = "udp6"
	}
	if addr.IP == nil {
		network = "udp"
	}
	multicast := addr.IP.IsMulticast()
	bind := addr.String()
	if multicast && network == "udp6" {
		// IPv6 groups need a scope to bind to; the wildcard with the group
		// joined receives the same datagrams.
		bind = net.JoinHostPort("::", strconv.Itoa(addr.Port))
	}
	lc := net.ListenConfig{Control: sockOpts{rcvbuf: s.cfg.ReadBuffer, reuse: multicast}.control}
	pc, err := lc.ListenPacket(ctx, network, bind)
	if err != nil {
		return fmt.Errorf("udp-source: listen %q: %w", s.cfg.Listen, err)
	}
	conn := pc.(*net.UDPConn)
	if multicast {
		var ifi *net.Interface
		if s.cfg.Interface != "" {
			if ifi, err = net.InterfaceByName(s.cfg.Interface); err != nil {
				conn.Close()
				return fmt.Errorf("udp-source: interface %q: %w", s.cfg.Interface, err)
			}
		}
		group := &net.UDPAddr{IP: addr.IP}
		if network == "udp6" {
			err = ipv6.NewPacketConn(conn).JoinGroup(ifi, group)
		} else {
			err = ipv4.NewPacketConn(conn).JoinGroup(ifi, group)
		}
		if err != nil {
			conn.Close()
			return fmt.Errorf("udp-source: join group %s: %w", addr.IP, err)
		}
	}
	if s.cfg.ReadBuffer > 0 {
		if got, ok := sockbuf.Recv(conn); ok && got < s.cfg.ReadBuffer {
			s.env.Log.Warn("udp-source: kernel capped the receive buffer (raise net.core.rmem_max)", "asked", s.cfg.ReadBuffer, "got", got)
		}
	}
	r, err := udpbatch.NewReader(conn)
	if err != nil {
		conn.Close()
		return fmt.Errorf("udp-source: %w", err)
	}
	s.conn, s.r = conn, r
	if raw, err := conn.SyscallConn(); err == nil {
		s.kd = newDropReader(raw)
		s.kdrop, _ = s.kd.drops()
	}
	s.initSlots()
	s.env.Log.Info("udp-source: listening", "listen", s.cfg.Listen, "addr", conn.LocalAddr().String(), "multicast", multicast)
	return nil
}

// Addr is the bound address (for tests listening on port 0).
func (s *Stage) Addr() net.Addr {
	if s.conn == nil {
		return nil
	}
	return s.conn.LocalAddr()
}

// initSlots gives every batch slot a pooled packet buffer and an overflow.
func (s *Stage) initSlots() {
	s.msgs = make([]udpbatch.Message, s.cfg.Batch)
	s.from = make([]netip.AddrPort, s.cfg.Batch)
	s.slots = make([]*core.Packet, s.cfg.Batch)
	s.over = make([][]byte, s.cfg.Batch)
	for i := range s.msgs {
		s.over[i] = make([]byte, maxDatagram-slotSize)
		s.msgs[i].Buffers = [][]byte{nil, s.over[i]}
		s.refill(i)
	}
}

func (s *Stage) refill(i int) {
	p := core.NewPacket(slotSize)
	s.slots[i] = p
	s.msgs[i].Buffers[0] = p.Data[:slotSize]
}

// tick is how often silent streams and unnamed SSRCs are looked at.
func (s *Stage) tick() time.Duration {
	d := s.cfg.StreamTimeout
	if s.cfg.UnnamedHold > 0 && s.cfg.UnnamedHold < d {
		d = s.cfg.UnnamedHold
	}
	return min(max(d/4, 5*time.Millisecond), 250*time.Millisecond)
}

// Run receives until ctx is cancelled, then ends every stream and returns.
func (s *Stage) Run(ctx context.Context, _ <-chan *core.Packet, out core.Output) error {
	if err := s.Open(ctx); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { s.conn.Close() })
	defer stop()
	defer s.shutdown(out)
	tick := s.tick()
	var next time.Time
	errs := 0
	for {
		if now := time.Now(); !now.Before(next) {
			s.housekeep(s.env.Clock.Now(), out)
			next = now.Add(tick)
			// The deadline wakes the read for housekeeping when all is
			// quiet, a tick after it is due: while packets come they run
			// it at the top of this loop and move the deadline on before
			// it fires, for each firing wakes the process and the
			// runtime's sysmon (4 a second on a busy edge, for nothing).
			_ = s.conn.SetReadDeadline(next.Add(tick))
		}
		n, err := s.r.Read(s.msgs)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			if errs++; errs == 1 || errs%100 == 0 {
				s.env.Log.Warn("udp-source: read failed", "err", err, "times", errs)
			}
			if errs >= errorsToQuit {
				return fmt.Errorf("udp-source: reading %s: %w", s.cfg.Listen, err)
			}
			continue
		}
		errs = 0
		for i := range n {
			s.from[i] = s.r.From(i)
		}
		s.process(n, out)
	}
}

// process handles the n datagrams just read into the slots.
func (s *Stage) process(n int, out core.Output) {
	now := s.env.Clock.Now()
	ingest := now.UnixNano()
	for i := 0; i < n; i++ {
		m := &s.msgs[i]
		var p *core.Packet
		fromSlot := m.N <= slotSize
		if fromSlot {
			p = s.slots[i]
			p.Data = p.Data[:m.N]
		} else {
			// Rare: a datagram larger than the slot (max_payload raised).
			p = core.NewPacket(m.N)
			copy(p.Data, s.slots[i].Data[:slotSize])
			copy(p.Data[slotSize:], s.over[i][:m.N-slotSize])
		}
		kept := s.datagram(p, s.from[i], now, ingest, out)
		switch {
		case kept && fromSlot:
			s.refill(i)
		case !kept && !fromSlot:
			p.Release()
		}
	}
	s.heldGauge.Set(float64(s.held))
}

// datagram classifies one datagram from from and reports whether p was
// handed on (emitted or held).
func (s *Stage) datagram(p *core.Packet, from netip.AddrPort, now time.Time, ingest int64, out core.Output) bool {
	if len(s.allowed) > 0 && !s.listed(from.Addr()) {
		s.notAllowed.Inc()
		return false
	}
	b := p.Data
	switch announce.Classify(b) {
	case announce.RTCP:
		s.rtcp(b, from, now, out)
		return false
	case announce.RTP:
	default:
		s.junk.Inc()
		return false
	}
	if _, _, err := rtpheader.Check(b); err != nil {
		s.junk.Inc()
		return false
	}
	if pt := int(rtpheader.PayloadType(b)); pt != s.cfg.PayloadType {
		if pt == s.cfg.ParityType {
			return s.parity(p, from, ingest, out)
		}
		s.badPT.Inc()
		return false
	}
	ssrc := rtpheader.SSRC(b)
	src := s.sources[ssrc]
	switch {
	case src == nil:
		if s.cfg.UnnamedHold <= 0 {
			s.unnamed.Inc()
			return false
		}
		if _, gone := s.retired[ssrc]; gone {
			s.unnamed.Inc()
			return false
		}
		if src = s.newSource(ssrc, from, now, out); src == nil {
			s.unnamed.Inc()
			return false
		}
	case src.from != from:
		s.foreign.Inc()
		return false
	}
	p.Timestamp = rtpheader.Timestamp(b)
	p.Ingest = ingest
	if src.stream == nil {
		src.hits++
		if src.name != "" && !s.start(src, now, out) && !src.refused {
			s.refusal.Inc()
			return false
		}
		if src.stream == nil { // not named yet, or its name is taken: hold p
			if len(src.held) >= maxHeld || s.held >= maxHeldTotal {
				s.dropCounter(src).Inc()
				return false
			}
			src.held = append(src.held, p)
			s.held++
			return true
		}
	}
	src.lastSeen, src.lastRTP = now, now
	p.Stream = src.stream
	out.Emit(p) // the runtime counts the stream's packets and bytes
	return true
}

// parity passes a parity packet on the stream whose SSRC it protects (the
// 4 bytes after its RTP header, docs/protocol.md), when that stream is live
// and from the same sender; it never makes or holds a stream.
func (s *Stage) parity(p *core.Packet, from netip.AddrPort, ingest int64, out core.Output) bool {
	b := p.Data
	if len(b) < rtpheader.Size+4 {
		s.junk.Inc()
		return false
	}
	src := s.sources[binary.BigEndian.Uint32(b[rtpheader.Size:])]
	if src == nil || src.stream == nil || src.from != from {
		s.parityOrphan.Inc()
		return false
	}
	p.Timestamp = rtpheader.Timestamp(b)
	p.Ingest = ingest
	p.Stream = src.stream
	out.Emit(p)
	return true
}

// newSource makes a pending source for ssrc bound to from. When its class
// is full it evicts the oldest pending SSRC that has sent but one datagram
// or was refused for its sender's cap (a flood of made-up SSRCs churns
// among itself and never pushes out a real one, which sends many), or
// returns nil if there is none.
func (s *Stage) newSource(ssrc uint32, from netip.AddrPort, now time.Time, out core.Output) *source {
	known := s.senders[from] > 0
	c := class(known)
	if len(s.pending[c]) >= maxPending {
		var victim *source
		for _, p := range s.pending[c] {
			if (p.hits <= 1 || p.capped) && (victim == nil || p.firstSeen.Before(victim.firstSeen)) {
				victim = p
			}
		}
		if victim == nil {
			return nil
		}
		s.end(victim, "evicted", now, out)
	}
	src := &source{ssrc: ssrc, from: from, known: known, firstSeen: now}
	s.sources[ssrc] = src
	s.addPending(src)
	return src
}

func (s *Stage) addPending(src *source) {
	c := class(src.known)
	s.pending[c] = append(s.pending[c], src)
}

func (s *Stage) removePending(src *source) {
	l := s.pending[class(src.known)]
	for i, p := range l {
		if p == src {
			l[i] = l[len(l)-1]
			l[len(l)-1] = nil
			s.pending[class(src.known)] = l[:len(l)-1]
			return
		}
	}
}

// listed reports whether addr is in senders.
func (s *Stage) listed(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range s.allowed {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// overCap reports whether from may start no more streams: an address not
// in senders (the cloud, which may send a great many, is listed there)
// already sends max_streams_per_sender. It logs the first refusal and then
// at most one line per capLogEvery, so a stranger's thousand names cost
// one line, not one each.
func (s *Stage) overSenderCap(from netip.AddrPort, now time.Time) bool {
	if s.cfg.PerSender <= 0 || s.perIP[from.Addr().Unmap()] < s.cfg.PerSender || s.listed(from.Addr()) {
		return false
	}
	s.capRefused++
	if s.capLogged.IsZero() || now.Sub(s.capLogged) >= capLogEvery {
		s.env.Log.Warn("udp-source: sender has max_streams_per_sender streams live, refusing more (list the cloud in senders)",
			"sender", from.Addr().String(), "max_streams_per_sender", s.cfg.PerSender, "refused", s.capRefused)
		s.capLogged, s.capRefused = now, 0
	}
	return true
}

// pendingCount is how many SSRCs are not live yet.
func (s *Stage) pendingCount() int { return len(s.pending[0]) + len(s.pending[1]) }

func class(known bool) int {
	if known {
		return 1
	}
	return 0
}

// dropCounter is the reason src's held packets are dropped for.
func (s *Stage) dropCounter(src *source) *core.DropCounter {
	if src.refused {
		return s.nameTaken
	}
	return s.unnamed
}

// rtcp applies an RTCP datagram from from: SDES names, SR keeps alive, BYE
// ends; only an SSRC's own sender is listened to.
func (s *Stage) rtcp(b []byte, from netip.AddrPort, now time.Time, out core.Output) {
	if err := announce.Parse(b, &s.report); err != nil {
		s.junk.Inc()
		return
	}
	for _, n := range s.report.Names {
		if announce.ValidName(n.Name) {
			s.name(n.SSRC, n.Name, from, now, out)
		}
	}
	for _, sr := range s.report.Senders {
		if src := s.sources[sr.SSRC]; src != nil && src.stream != nil && src.from == from {
			src.lastSeen = now
			// Where the sender's clock stands: the edge measures latency by it.
			src.stream.SetSenderClock(&core.SenderClock{SSRC: sr.SSRC, Wall: announce.NTPTime(sr.NTP), TS: sr.RTPTime, NTP: sr.NTP, Arrived: now})
		}
	}
	for _, ssrc := range s.report.Byes {
		switch src := s.sources[ssrc]; {
		case src == nil:
		case src.from != from:
			s.foreign.Inc()
		default:
			s.end(src, "bye", now, out)
		}
	}
}

// name records ssrc's stream name from its SDES. The stream starts with the
// SSRC's RTP: at once if some is held (the RTP came first), else with its
// first packet, so an announcement alone never makes a stream.
func (s *Stage) name(ssrc uint32, name string, from netip.AddrPort, now time.Time, out core.Output) {
	if _, gone := s.retired[ssrc]; gone {
		return // a late SDES of an ended stream must not revive it
	}
	src := s.sources[ssrc]
	switch {
	case src == nil:
		if src = s.newSource(ssrc, from, now, out); src == nil {
			s.full.Inc()
			return
		}
	case src.from != from:
		s.foreign.Inc()
		return
	case src.stream != nil && src.stream.Name == name:
		src.lastSeen = now
		return
	case src.stream != nil:
		// Renamed by its own sender: the old stream ends, the new name
		// starts with the next RTP.
		s.endStream(src, "renamed", out)
		src.firstSeen, src.hits = now, 0
		s.addPending(src)
	}
	src.hits++
	src.name = name
	if len(src.held) > 0 && !s.start(src, now, out) && !src.refused {
		// No room for another stream: what it held goes.
		s.held -= len(src.held)
		s.refusal.Add(len(src.held))
		for i, p := range src.held {
			p.Release()
			src.held[i] = nil
		}
		src.held = src.held[:0]
	}
}

// start makes the named, pending src live and releases what it held, in
// arrival order. It refuses (false) when too many streams are live, in all
// or from src's sender (s.refusal says which), or when another SSRC holds
// the name and is still sending from another address (src.refused then
// set: src waits, holding its packets).
func (s *Stage) start(src *source, now time.Time, out core.Output) bool {
	src.refused = false
	s.refusal = s.tooMany
	old := s.names[src.name]
	// A new SSRC of a name its own address sends replaces that stream and
	// adds none.
	src.capped = (old == nil || old.from.Addr() != src.from.Addr()) && s.overSenderCap(src.from, now)
	if src.capped {
		s.refusal = s.overCap
		return false
	}
	var cont *core.Stream
	if old != nil {
		if old.from != src.from && now.Sub(old.lastRTP) < min(s.takeoverQuiet(), s.cfg.StreamTimeout) {
			src.refused = true
			return false
		}
		// Same name, new SSRC: the publisher reconnected upstream, or
		// came back through another cloud. Its viewers stay: the stream
		// goes on under the new SSRC.
		cont = s.takeOver(old, now)
	} else if len(s.names) >= s.cfg.MaxStreams {
		return false
	}
	s.removePending(src)
	src.stream = cont
	if cont == nil {
		src.stream = core.NewStream(src.name)
	}
	src.lastSeen, src.lastRTP = now, now
	s.names[src.name] = src
	s.senders[src.from]++
	s.perIP[src.from.Addr().Unmap()]++
	s.active.Set(float64(len(s.names)))
	if cont != nil {
		s.continued.Inc()
		s.env.Log.Info("udp-source: stream continued by a new sender", "stream", core.Clip(src.name), "ssrc", src.ssrc, "from", src.from.String(), "held", len(src.held))
	} else {
		s.started.Inc()
		s.env.Log.Info("udp-source: stream start", "stream", core.Clip(src.name), "ssrc", src.ssrc, "from", src.from.String(), "held", len(src.held))
		out.Emit(core.NewEvent(core.EventStart, src.stream))
	}
	s.held -= len(src.held)
	for i, p := range src.held {
		p.Stream = src.stream
		out.Emit(p)
		src.held[i] = nil
	}
	src.held = nil
	return true
}

// end forgets src: a live stream ends, held packets are dropped.
func (s *Stage) end(src *source, reason string, now time.Time, out core.Output) {
	delete(s.sources, src.ssrc)
	if src.stream == nil {
		s.removePending(src)
		s.held -= len(src.held)
		s.dropCounter(src).Add(len(src.held))
		for _, p := range src.held {
			p.Release()
		}
		src.held = nil
		return
	}
	// Only a stream's own sender ends it (or silence), so strangers cannot
	// fill this table.
	if reason != "silence" && len(s.retired) < maxRetired {
		s.retired[src.ssrc] = now
	}
	s.endStream(src, reason, out)
}

// takeOver retires old, whose name a new SSRC takes, and returns its
// stream for the new one to continue: nothing is emitted. The old SSRC's
// late RTP and RTCP (a cloud still announcing it through its
// reconnect_grace, then its BYE) are ignored from now on.
func (s *Stage) takeOver(old *source, now time.Time) *core.Stream {
	st := old.stream
	delete(s.sources, old.ssrc)
	if len(s.retired) < maxRetired {
		s.retired[old.ssrc] = now
	}
	s.forgetLive(old)
	old.stream = nil
	// The old sender's clock does not map the new one's timestamps: no
	// latency is measured until the new sender reports.
	st.SetSenderClock(nil)
	return st
}

// forgetLive takes src's live stream out of the tables.
func (s *Stage) forgetLive(src *source) {
	if s.names[src.stream.Name] == src {
		delete(s.names, src.stream.Name)
	}
	if s.senders[src.from]--; s.senders[src.from] <= 0 {
		delete(s.senders, src.from)
	}
	ip := src.from.Addr().Unmap()
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
}

// endStream ends src's live stream; src itself stays as it is otherwise.
func (s *Stage) endStream(src *source, reason string, out core.Output) {
	s.forgetLive(src)
	s.ended.Inc()
	s.active.Set(float64(len(s.names)))
	s.env.Log.Info("udp-source: stream end", "stream", core.Clip(src.stream.Name), "ssrc", src.ssrc, "reason", reason,
		"packets", src.stream.Packets.Load())
	out.Emit(core.NewEvent(core.EventEnd, src.stream))
	src.stream = nil
}

// housekeep ends silent streams, drops unnamed SSRCs held too long,
// forgets retired SSRCs after a while and counts what the kernel dropped.
func (s *Stage) housekeep(now time.Time, out core.Output) {
	s.countKernelDrops()
	for _, src := range s.sources {
		switch {
		case src.stream == nil && now.Sub(src.firstSeen) >= s.hold(src):
			s.end(src, "silence", now, out)
		case src.stream != nil && now.Sub(src.lastSeen) >= s.cfg.StreamTimeout:
			s.end(src, "silence", now, out)
		}
	}
	for ssrc, at := range s.retired {
		if now.Sub(at) >= s.cfg.StreamTimeout+s.cfg.UnnamedHold {
			delete(s.retired, ssrc)
		}
	}
	s.heldGauge.Set(float64(s.held))
}

// countKernelDrops counts the datagrams the kernel dropped for the socket
// since the last look (socket_overflow): a burst longer than read_buffer
// loses packets before any counter of ours sees them, and the gaps they
// leave would otherwise look unexplained.
func (s *Stage) countKernelDrops() {
	if s.kd == nil {
		return
	}
	if n, ok := s.kd.drops(); ok {
		if d := n - s.kdrop; d > 0 {
			s.overflow.Add(int(d))
		}
		s.kdrop = n
	}
}

// hold is how long pending src may wait: for its name, or (named) for its
// first RTP or for its name to be free.
func (s *Stage) hold(src *source) time.Duration {
	if src.name != "" {
		return max(s.cfg.UnnamedHold, namedHold, s.takeoverQuiet()+time.Second)
	}
	return s.cfg.UnnamedHold
}

// takeoverQuiet is takeover_quiet, or its default in a stage built
// without it.
func (s *Stage) takeoverQuiet() time.Duration {
	if s.cfg.TakeoverQuiet <= 0 {
		return takeoverQuiet
	}
	return s.cfg.TakeoverQuiet
}

// shutdown ends every stream and frees the buffers.
func (s *Stage) shutdown(out core.Output) {
	s.countKernelDrops()
	now := s.env.Clock.Now()
	for _, src := range s.sources {
		s.end(src, "shutdown", now, out)
	}
	clear(s.retired)
	for i, p := range s.slots {
		p.Release()
		s.slots[i] = nil
	}
	_ = s.conn.Close()
}
