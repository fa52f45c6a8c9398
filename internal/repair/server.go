// Package repair runs the edge↔cloud repair protocol (repairwire) over QUIC: a per-SSRC
// packet cache ring, a Server that answers NACKs, a Client that asks, TLS and rate limits.
package repair

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlog"
	"github.com/quic-go/quic-go/qlogwriter"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/repairwire"
)

// Event names what a server counts.
type Event uint8

const (
	EvRequest     Event = iota // a request frame served (NACK, STREAMS_REQ, INIT_REQ)
	EvRepaired                 // a cached packet sent
	EvGone                     // a sequence number answered "gone"
	EvRefusedRate              // a packet refused by the per-peer rate limit
	EvAuthFailed               // a peer closed for a wrong, missing or late token
	EvBadRequest               // a malformed or oversized frame; its stream was reset
	EvRefusedPeer              // an authenticated peer closed because MaxPeers are connected
	EvIdleStream               // a request stream closed after StreamIdleTimeout without a request
	EvEvicted                  // a peer still without HELLO closed to make room for a newer one
	EvJunk                     // a datagram on the repair port that QUIC dropped (not QUIC, unknown connection, unparsable)
	EvReport                   // an edge's REPORT kept
	EvBadReport                // a REPORT refused: malformed, unknown SSRC, too soon after the last, too many SSRCs
	numEvents
)

var eventNames = [numEvents]string{"requests", "repaired", "gone", "refused_rate", "auth_failed", "bad_request", "refused_peers", "idle_stream", "evicted_unauth", "junk", "reports", "bad_reports"}

func (e Event) String() string {
	if e < numEvents {
		return eventNames[e]
	}
	return "event?"
}

// ServerConfig configures a Server. Zero values take the defaults noted.
type ServerConfig struct {
	Addr              string // UDP address to listen on
	Token             string // when set, peers must present it in HELLO (SetToken changes it)
	MaxRate           int    // bytes/s of repaired packets per peer; 0 = unlimited (SetMaxRate changes it)
	TotalRate         int    // bytes/s of repaired packets shared by all peers; 0 = none (SetTotalRate, SetShares)
	CertFile, KeyFile string // PEM files; both empty = self-signed certificate
	CachePackets      int    // most packets kept per SSRC (default 5000)
	// CacheDuration keeps, per SSRC, only the packets that arrived within
	// this long of its newest (default DefaultCacheDuration; negative: by
	// CachePackets alone, preallocated), so memory follows each stream's
	// rate rather than CachePackets × SlotBytes.
	CacheDuration time.Duration
	SlotBytes     int // bytes preallocated per ring slot (default 1280)
	Log           *slog.Logger
	// Count, if set, is called for every counted event (from many goroutines).
	Count func(ev Event, n int)
	// HelloTimeout bounds both the QUIC handshake and the wait for HELLO
	// after it (default DefaultHelloTimeout). A real edge sends HELLO at once.
	HelloTimeout time.Duration
	// MaxUnauthenticated caps connections waiting for their HELLO (default
	// DefaultMaxUnauthenticated). A newcomer over the cap is not refused:
	// the oldest waiting connection is closed with CodeBusy instead, so
	// peers that handshake and never speak cannot keep an edge out.
	MaxUnauthenticated int
	// MaxUnauthenticatedPerAddr caps the connections waiting for their
	// HELLO from one IP address (IPv6: one /64); over it, that address's
	// oldest is closed (default max(2, MaxUnauthenticated/8)). One squatting
	// address then holds only its share of the table.
	MaxUnauthenticatedPerAddr int
	// MaxPeers caps authenticated connections; one more is closed with
	// CodeTooManyPeers after its HELLO (default DefaultMaxPeers).
	MaxPeers int
	// StreamIdleTimeout closes a request stream (not the control stream)
	// that carries no whole request for this long, so streams a peer opens
	// and forgets do not each hold a goroutine forever (default
	// DefaultStreamIdleTimeout). The edge opens a new one when it needs it.
	StreamIdleTimeout time.Duration
	WriteTimeout      time.Duration // a peer must take replies within this (default 5 s)
	Now               func() time.Time
}

// Stats is a snapshot of a server's counters.
type Stats struct {
	Events  [numEvents]uint64
	Peers   int
	Streams int
}

// Get returns the count of ev.
func (s Stats) Get(ev Event) uint64 { return s.Events[ev] }

// Server caches packets per SSRC and answers repair requests over QUIC.
type Server struct {
	cfg ServerConfig
	tls *tls.Config
	udp *net.UDPConn
	tr  *quic.Transport
	ln  *quic.Listener

	mu      sync.RWMutex
	streams map[uint32]*cached
	peers   map[*quic.Conn]struct{}
	closed  bool
	// pending holds the peers that have not passed HELLO yet, with the
	// order they came in, and perAddr how many of them each address has:
	// both bounded by MaxUnauthenticated.
	pending  map[*quic.Conn]pendingPeer
	perAddr  map[netip.Addr]int
	arrivals uint64
	busy     atomic.Bool // pending is at least half full: validate addresses (Retry) first
	// attempts counts new connection attempts in the current second, so a
	// flood of handshakes that never finish (or come from spoofed
	// addresses) is made to prove its addresses too.
	attemptsMu  sync.Mutex
	attemptsAt  time.Time
	attemptsNum int
	authed      int // peers past HELLO
	// token and maxRate start as cfg's and change while serving
	// (SetToken, SetMaxRate): HELLO and every peer's limiter read them.
	token   atomic.Pointer[string]
	maxRate atomic.Int64
	// closeDone is closed once Close has released the socket.
	closeDone chan struct{}

	events [numEvents]atomic.Uint64

	// edges holds the admitted peers' reports by slot (bounded by MaxPeers).
	edgeMu sync.Mutex
	edges  map[int]*edgeReports
	// totalRate is the repair budget shared among the peers and shares
	// the rates the controller set by slot (share.go); both under edgeMu.
	totalRate int
	shares    map[int]int
	// oldProtocol (tests) answers REPORT as a server that predates it does.
	oldProtocol atomic.Bool

	logMu            sync.Mutex
	lastRefusalLog   time.Time
	refusalsUnlogged int
	wg               sync.WaitGroup
}

type cached struct {
	ring   *Ring
	stream *core.Stream
	ended  bool
	seq    uint64 // order of registration, newest wins a lookup by name
}

var regSeq atomic.Uint64

// NewServer checks the configuration and builds the TLS config (making a
// self-signed certificate when no files are given). It binds nothing.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.CachePackets == 0 {
		cfg.CachePackets = 5000
	}
	if cfg.CacheDuration == 0 {
		cfg.CacheDuration = DefaultCacheDuration
	}
	if cfg.SlotBytes == 0 {
		cfg.SlotBytes = 1280
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.HelloTimeout == 0 {
		cfg.HelloTimeout = DefaultHelloTimeout
	}
	if cfg.MaxUnauthenticated == 0 {
		cfg.MaxUnauthenticated = DefaultMaxUnauthenticated
	}
	if cfg.MaxUnauthenticatedPerAddr == 0 {
		cfg.MaxUnauthenticatedPerAddr = max(2, cfg.MaxUnauthenticated/8)
	}
	if cfg.MaxPeers == 0 {
		cfg.MaxPeers = DefaultMaxPeers
	}
	if cfg.StreamIdleTimeout == 0 {
		cfg.StreamIdleTimeout = DefaultStreamIdleTimeout
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	t, err := ServerTLS(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, tls: t, streams: map[uint32]*cached{}, peers: map[*quic.Conn]struct{}{},
		pending: map[*quic.Conn]pendingPeer{}, perAddr: map[netip.Addr]int{},
		edges: map[int]*edgeReports{}, shares: map[int]int{},
		closeDone: make(chan struct{}),
	}
	if err := s.SetToken(cfg.Token); err != nil {
		return nil, err
	}
	if err := s.SetMaxRate(cfg.MaxRate); err != nil {
		return nil, err
	}
	if err := s.SetTotalRate(cfg.TotalRate); err != nil {
		return nil, err
	}
	return s, nil
}

// SetToken changes the token a HELLO must present from now on (empty: none).
// Peers already past HELLO keep their connection: rotating the token admits
// new peers with the new one and refuses the old one from here on.
func (s *Server) SetToken(token string) error {
	if len(token) > repairwire.MaxTokenLen {
		return fmt.Errorf("repair: token longer than %d bytes", repairwire.MaxTokenLen)
	}
	s.token.Store(&token)
	return nil
}

// SetMaxRate changes the bytes/s of repairs each peer may take (0: no
// limit), for the peers already connected too, from their next request on.
func (s *Server) SetMaxRate(rate int) error {
	if rate < 0 {
		return fmt.Errorf("repair: max rate %d is negative", rate)
	}
	s.maxRate.Store(int64(rate))
	return nil
}

// Listen binds the UDP socket.
func (s *Server) Listen() error {
	ua, err := net.ResolveUDPAddr("udp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("repair: listen address %q: %w", s.cfg.Addr, err)
	}
	udp, err := net.ListenUDP("udp", ua)
	if err != nil {
		return fmt.Errorf("repair: listen on %s: %w", s.cfg.Addr, err)
	}
	// A reset key that survives restarts lets a restarted server answer an
	// old connection's packets with a stateless reset, so the edge notices
	// at once instead of after its idle timeout.
	key := quic.StatelessResetKey(sha256.Sum256([]byte("mediapipe-rtx stateless reset\x00" + s.cfg.Token)))
	tr := &quic.Transport{
		Conn: udp, StatelessResetKey: &key,
		// While the table of peers without HELLO is half full or more,
		// a new peer first proves its address with a Retry: spoofed
		// handshakes then cost the server no connection state.
		VerifySourceAddress: s.verifySource,
		Tracer:              junkCounter{s},
	}
	ln, err := tr.Listen(s.tls, &quic.Config{
		HandshakeIdleTimeout:  s.cfg.HelloTimeout,
		MaxIdleTimeout:        30 * time.Second,
		MaxIncomingStreams:    MaxIncomingStreams,
		MaxIncomingUniStreams: -1,
		KeepAlivePeriod:       5 * time.Second,
	})
	if err != nil {
		_ = udp.Close()
		return fmt.Errorf("repair: listen on %s: %w", s.cfg.Addr, err)
	}
	s.udp, s.tr, s.ln = udp, tr, ln
	return nil
}

// verifySource tells QUIC whether a new connection attempt must first prove
// its address with a Retry: while the table of peers without HELLO is half
// full, or more than MaxUnauthenticated attempts came in the last second.
// A Retry costs an edge one round trip and the server no state.
func (s *Server) verifySource(net.Addr) bool {
	if s.busy.Load() {
		return true
	}
	now := time.Now()
	s.attemptsMu.Lock()
	defer s.attemptsMu.Unlock()
	if now.Sub(s.attemptsAt) >= time.Second {
		s.attemptsAt, s.attemptsNum = now, 0
	}
	s.attemptsNum++
	return s.attemptsNum > s.cfg.MaxUnauthenticated
}

// junkCounter counts the datagrams the QUIC transport drops before any
// connection sees them: not QUIC, unparsable, or for no connection.
type junkCounter struct{ s *Server }

func (j junkCounter) RecordEvent(ev qlogwriter.Event) {
	if _, ok := ev.(qlog.PacketDropped); ok {
		j.s.count(EvJunk, 1)
	}
}

func (junkCounter) Close() error { return nil }

// readNonQUIC takes the datagrams that are not QUIC at all off the
// transport's small queue and counts them; without a reader quic-go drops
// them uncounted.
func (s *Server) readNonQUIC(ctx context.Context) {
	buf := make([]byte, 2048)
	for {
		if _, _, err := s.tr.ReadNonQUICPacket(ctx, buf); err != nil {
			return
		}
		s.count(EvJunk, 1)
	}
}

// Addr is the bound address (nil before Listen).
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Serve accepts peers until ctx is done or Close is called, then closes
// every peer and waits for their goroutines.
func (s *Server) Serve(ctx context.Context) error {
	if s.ln == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Close() })
	defer stop()
	jctx, jstop := context.WithCancel(ctx)
	junkDone := make(chan struct{})
	go func() { defer close(junkDone); s.readNonQUIC(jctx) }()
	defer func() { jstop(); <-junkDone }()
	s.cfg.Log.Info("repair server listening", "addr", s.ln.Addr().String(), "alpn", repairwire.ALPN, "auth", *s.token.Load() != "")
	for {
		conn, err := s.ln.Accept(ctx)
		if err != nil {
			_ = s.Close()
			s.wg.Wait()
			if ctx.Err() != nil || errors.Is(err, quic.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("repair: accept: %w", err)
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = conn.CloseWithError(repairwire.CodeShutdown, "shutting down")
			continue
		}
		evict := s.addPending(conn)
		s.peers[conn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		if evict != nil {
			s.count(EvEvicted, 1)
			_ = evict.CloseWithError(repairwire.CodeBusy, "too many unauthenticated peers")
		}
		go s.serveConn(conn)
	}
}

// Close stops listening and closes every peer's connection. Serve returns
// after their goroutines end.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.closeDone
		return nil
	}
	s.closed = true
	defer close(s.closeDone)
	peers := make([]*quic.Conn, 0, len(s.peers))
	for c := range s.peers {
		peers = append(peers, c)
	}
	s.mu.Unlock()
	for _, c := range peers {
		_ = c.CloseWithError(repairwire.CodeShutdown, "shutting down")
	}
	if s.ln != nil {
		_ = s.ln.Close()
		_ = s.tr.Close()
		return s.udp.Close()
	}
	return nil
}

// Wait waits for every peer goroutine (after Close).
func (s *Server) Wait() { s.wg.Wait() }

func (s *Server) count(ev Event, n int) {
	if n <= 0 {
		return
	}
	s.events[ev].Add(uint64(n))
	if s.cfg.Count != nil {
		s.cfg.Count(ev, n)
	}
}

// Stats returns the counters so far.
func (s *Server) Stats() Stats {
	var st Stats
	for i := range st.Events {
		st.Events[i] = s.events[i].Load()
	}
	s.mu.RLock()
	st.Peers, st.Streams = len(s.peers), len(s.streams)
	s.mu.RUnlock()
	return st
}

// Stream returns the cache ring of ssrc, creating it for stream if new. A
// known SSRC now claimed by another stream gets a fresh ring.
func (s *Server) Stream(ssrc uint32, stream *core.Stream) *Ring {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.streams[ssrc]; ok && c.stream == stream {
		c.ended = false
		return c.ring
	}
	c := &cached{ring: NewTimedRing(s.cfg.CachePackets, s.cfg.SlotBytes, s.cfg.CacheDuration), stream: stream, seq: regSeq.Add(1)}
	s.streams[ssrc] = c
	return c.ring
}

// CacheBytes returns the memory every stream's cache holds.
func (s *Server) CacheBytes() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, c := range s.streams {
		n += c.ring.Bytes()
	}
	return n
}

// EndStream marks ssrc's stream as ended: its cache still answers, but a
// lookup of init tags by name prefers a live stream of the same name.
func (s *Server) EndStream(ssrc uint32) {
	s.mu.Lock()
	if c, ok := s.streams[ssrc]; ok {
		c.ended = true
	}
	s.mu.Unlock()
}

// Remove frees ssrc's cache; later requests for it are answered "gone".
func (s *Server) Remove(ssrc uint32) {
	s.mu.Lock()
	delete(s.streams, ssrc)
	s.mu.Unlock()
}

func (s *Server) ring(ssrc uint32) *Ring {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if c, ok := s.streams[ssrc]; ok {
		return c.ring
	}
	return nil
}

func (s *Server) list() []repairwire.StreamInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]repairwire.StreamInfo, 0, len(s.streams))
	for ssrc, c := range s.streams {
		if !c.ended {
			out = append(out, repairwire.StreamInfo{SSRC: ssrc, Name: c.stream.Name})
		}
	}
	return out
}

func (s *Server) init(req repairwire.InitReq) repairwire.Init {
	s.mu.RLock()
	var best *cached
	var bestSSRC uint32
	if req.SSRC != 0 {
		best, bestSSRC = s.streams[req.SSRC], req.SSRC
	} else {
		for ssrc, c := range s.streams {
			if c.stream.Name != req.Name {
				continue
			}
			if best == nil || (best.ended && !c.ended) || (best.ended == c.ended && c.seq > best.seq) {
				best, bestSSRC = c, ssrc
			}
		}
	}
	s.mu.RUnlock()
	if best == nil {
		return repairwire.Init{Status: repairwire.InitUnknown, SSRC: req.SSRC, Name: req.Name}
	}
	r := repairwire.Init{Status: repairwire.InitNone, SSRC: bestSSRC, Name: best.stream.Name}
	if t := best.stream.Init(); t != nil {
		r.Status, r.Tags = repairwire.InitFound, repairwire.InitTags(*t)
	}
	return r
}

// DefaultCacheDuration is how long a packet stays cached: far more than an
// edge's reorder latency (80 ms by default) plus a few round trips of NACK
// retries, and the same as a stream's cache outlives its end.
const DefaultCacheDuration = 5 * time.Second

// DefaultMaxUnauthenticated caps the connections waiting for their HELLO.
const DefaultMaxUnauthenticated = 256

// DefaultHelloTimeout bounds the handshake and the HELLO after it: an edge
// says HELLO one round trip after its handshake, so this is many round
// trips even across continents, and a silent peer holds a slot briefly.
const DefaultHelloTimeout = 2 * time.Second

// pendingPeer is a connection waiting for its HELLO.
type pendingPeer struct {
	addr    netip.Addr
	arrived uint64 // order of arrival: lower is older
}

// addrKey is the address pending peers are counted by: the IPv4 address,
// or the /64 of an IPv6 one (one host usually holds a whole /64).
func addrKey(a net.Addr) netip.Addr {
	ua, ok := a.(*net.UDPAddr)
	if !ok {
		return netip.Addr{}
	}
	ip := ua.AddrPort().Addr().Unmap()
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return ip
}

// addPending records conn as waiting for its HELLO and returns the peer it
// displaces, if any: the oldest of conn's address when that address is at
// its cap, else the oldest of all when the table is full. A newcomer always
// gets a slot, so squatters can delay an edge by at most their handshakes
// during its one round trip to HELLO. Callers hold mu.
func (s *Server) addPending(conn *quic.Conn) *quic.Conn {
	key := addrKey(conn.RemoteAddr())
	var evict *quic.Conn
	switch {
	case s.perAddr[key] >= s.cfg.MaxUnauthenticatedPerAddr:
		evict = s.oldestPending(key, true)
	case len(s.pending) >= s.cfg.MaxUnauthenticated:
		evict = s.oldestPending(key, false)
	}
	if evict != nil {
		s.dropPending(evict)
	}
	s.arrivals++
	s.pending[conn] = pendingPeer{addr: key, arrived: s.arrivals}
	s.perAddr[key]++
	s.busy.Store(len(s.pending) >= s.cfg.MaxUnauthenticated/2)
	return evict
}

// oldestPending scans the table (bounded by MaxUnauthenticated; a scan
// costs far less than the handshake that led here). Callers hold mu.
func (s *Server) oldestPending(key netip.Addr, sameAddr bool) *quic.Conn {
	var oldest *quic.Conn
	var at uint64
	for c, p := range s.pending {
		if sameAddr && p.addr != key {
			continue
		}
		if oldest == nil || p.arrived < at {
			oldest, at = c, p.arrived
		}
	}
	return oldest
}

// dropPending forgets conn as waiting for HELLO and reports whether it was.
// Callers hold mu.
func (s *Server) dropPending(conn *quic.Conn) bool {
	p, ok := s.pending[conn]
	if !ok {
		return false
	}
	delete(s.pending, conn)
	if s.perAddr[p.addr]--; s.perAddr[p.addr] <= 0 {
		delete(s.perAddr, p.addr)
	}
	s.busy.Store(len(s.pending) >= s.cfg.MaxUnauthenticated/2)
	return true
}

// DefaultMaxPeers caps authenticated connections: each may hold up to
// MaxIncomingStreams request streams, a goroutine each.
const DefaultMaxPeers = 64

// DefaultStreamIdleTimeout closes request streams that stay silent this long.
const DefaultStreamIdleTimeout = 60 * time.Second

// MaxIncomingStreams is how many streams one peer may have open at once.
const MaxIncomingStreams = 1024

// peer is one authenticated connection.
type peer struct {
	rate   *atomic.Int64 // the server's max rate, which may change while connected
	edge   *edgeReports  // its latest reports and its share of a total rate
	mu     sync.Mutex
	bucket bucket // tuned at each take to the lower of *rate and the share
}

func (p *peer) take(n int, now time.Time) bool {
	rate := p.rate.Load()
	if share := p.edge.share.Load(); share >= 0 && (rate <= 0 || share < rate) {
		if share == 0 {
			return false // a share of nothing
		}
		rate = share
	}
	if rate <= 0 {
		return true
	}
	p.mu.Lock()
	p.bucket.tune(int(rate), now)
	ok := p.bucket.take(n, now)
	p.mu.Unlock()
	return ok
}

func (s *Server) serveConn(conn *quic.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.peers, conn)
		s.mu.Unlock()
	}()
	remote := conn.RemoteAddr().String()
	ctrl, err := s.hello(conn)
	s.mu.Lock()
	waiting := s.dropPending(conn)
	s.mu.Unlock()
	if err == nil && !waiting {
		// Evicted while its HELLO was on the way: the connection is closed.
		err = errors.New("evicted before hello: too many unauthenticated peers")
	}
	if err == nil {
		err = s.admit(conn, ctrl)
	}
	if err != nil {
		s.logRefused(remote, err)
		return
	}
	defer func() {
		s.mu.Lock()
		s.authed--
		s.mu.Unlock()
	}()
	s.cfg.Log.Info("repair peer connected", "peer", remote)
	p := &peer{rate: &s.maxRate, edge: s.addEdge(remote, s.cfg.Now())}
	defer s.dropEdge(p.edge)
	// The control stream may carry requests too; when the peer ends it, it
	// is leaving. It stays open while idle, unlike request streams.
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.serveStream(p, ctrl, false)
		_ = conn.CloseWithError(repairwire.CodeNormal, "control stream ended")
	}()
	for {
		st, err := conn.AcceptStream(conn.Context())
		if err != nil {
			s.cfg.Log.Info("repair peer gone", "peer", remote, "err", core.Clip(err.Error()))
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveStream(p, st, true)
		}()
	}
}

// hello reads HELLO on the first stream and checks the token, or closes
// the connection with an application error and sends nothing else.
func (s *Server) hello(conn *quic.Conn) (*quic.Stream, error) {
	ctx, cancel := context.WithTimeout(conn.Context(), s.cfg.HelloTimeout)
	defer cancel()
	ctrl, err := conn.AcceptStream(ctx)
	if err != nil {
		s.authFailed(conn)
		_ = conn.CloseWithError(repairwire.CodeHelloTimeout, "no hello")
		return nil, fmt.Errorf("no control stream: %w", err)
	}
	_ = ctrl.SetReadDeadline(time.Now().Add(s.cfg.HelloTimeout))
	typ, payload, err := repairwire.NewFrameReader(ctrl, 2+repairwire.MaxTokenLen).Next()
	if err != nil {
		s.authFailed(conn)
		_ = conn.CloseWithError(repairwire.CodeProtocol, "expected hello")
		return nil, fmt.Errorf("reading hello: %w", err)
	}
	if typ != repairwire.FrameHello {
		// Say what came instead: there is no error to wrap here.
		s.count(EvAuthFailed, 1)
		_ = conn.CloseWithError(repairwire.CodeProtocol, "expected hello")
		return nil, fmt.Errorf("first frame is %s, not HELLO", typ)
	}
	h, err := repairwire.ParseHello(payload)
	if err != nil {
		s.count(EvAuthFailed, 1)
		_ = conn.CloseWithError(repairwire.CodeProtocol, "bad hello")
		return nil, fmt.Errorf("bad hello: %w", err)
	}
	if h.Version != repairwire.Version {
		s.count(EvAuthFailed, 1)
		_ = conn.CloseWithError(repairwire.CodeProtocol, "bad hello")
		return nil, fmt.Errorf("hello version %d, want %d", h.Version, repairwire.Version)
	}
	if token := *s.token.Load(); token != "" && subtle.ConstantTimeCompare([]byte(h.Token), []byte(token)) != 1 {
		s.count(EvAuthFailed, 1)
		_ = conn.CloseWithError(repairwire.CodeUnauthorized, "unauthorized")
		return nil, errors.New("wrong token")
	}
	return ctrl, nil
}

// authFailed counts a peer that failed its HELLO, unless it was evicted
// (and counted so) while waiting.
func (s *Server) authFailed(conn *quic.Conn) {
	s.mu.RLock()
	_, waiting := s.pending[conn]
	s.mu.RUnlock()
	if waiting {
		s.count(EvAuthFailed, 1)
	}
}

// admit counts a peer that passed HELLO as authenticated, if fewer than
// MaxPeers are, and answers HELLO_OK; otherwise it closes the connection
// with CodeTooManyPeers. Only a peer with the token learns that the server
// is full.
func (s *Server) admit(conn *quic.Conn, ctrl *quic.Stream) error {
	s.mu.Lock()
	full := s.authed >= s.cfg.MaxPeers
	if !full {
		s.authed++
	}
	s.mu.Unlock()
	if full {
		s.count(EvRefusedPeer, 1)
		_ = conn.CloseWithError(repairwire.CodeTooManyPeers, "too many peers")
		return fmt.Errorf("max_peers (%d) already connected", s.cfg.MaxPeers)
	}
	_ = ctrl.SetReadDeadline(time.Time{})
	_ = ctrl.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	if _, err := ctrl.Write(repairwire.AppendHelloOK(nil, repairwire.HelloOK{Version: repairwire.Version, CachePackets: uint32(s.cfg.CachePackets)})); err != nil {
		_ = conn.CloseWithError(repairwire.CodeProtocol, "hello reply failed")
		s.mu.Lock()
		s.authed--
		s.mu.Unlock()
		return fmt.Errorf("hello reply: %w", err)
	}
	return nil
}

// reqScratch holds one request stream's reusable buffers.
type reqScratch struct {
	entries []repairwire.NACKEntry
	seqs    []uint16
	gone    []repairwire.NACKEntry
	goneSq  []uint16
	refused []repairwire.NACKEntry
	refSq   []uint16
	pkt     []byte
	out     []byte
}

// writers buffer replies only while a request is answered: a stream that
// sits between requests (most of them, most of the time) holds no buffer.
var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}

// serveStream answers the request frames of one stream in order until the
// peer ends it. Malformed or oversized frames reset the stream. A request
// stream (idle true) that brings no whole request within StreamIdleTimeout
// is closed.
func (s *Server) serveStream(p *peer, st *quic.Stream, idle bool) {
	fr := repairwire.NewFrameReader(st, repairwire.MaxRequestFrame)
	var sc reqScratch
	for {
		if idle {
			_ = st.SetReadDeadline(time.Now().Add(s.cfg.StreamIdleTimeout))
		}
		typ, payload, err := fr.Next()
		if err != nil {
			switch {
			case errors.Is(err, repairwire.ErrFrameTooLarge):
				s.bad(st, repairwire.StreamTooLarge)
			case errors.Is(err, io.EOF):
				_ = st.Close()
			case errors.Is(err, io.ErrUnexpectedEOF):
				s.bad(st, repairwire.StreamBadFrame)
			case idle && isTimeout(err):
				// The peer's reader sees our end and opens a new stream
				// for its next request.
				s.count(EvIdleStream, 1)
				st.CancelRead(repairwire.StreamIdle)
				_ = st.Close()
			default:
				st.CancelWrite(repairwire.CodeStreamGone)
			}
			return
		}
		w := writers.Get().(*bufio.Writer)
		w.Reset(st)
		ok := s.answer(p, st, w, &sc, typ, payload)
		w.Reset(nil)
		writers.Put(w)
		if !ok {
			return
		}
	}
}

// isTimeout is apart from serveStream because errors.As moves its target
// to the heap: declared in the loop, that cost every request an allocation.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// bad counts a malformed request and resets its stream both ways.
func (s *Server) bad(st *quic.Stream, code quic.StreamErrorCode) {
	s.count(EvBadRequest, 1)
	st.CancelRead(code)
	st.CancelWrite(code)
}

// answer writes the reply to one request frame and flushes it. It returns
// false when the stream has been reset and must be left.
func (s *Server) answer(p *peer, st *quic.Stream, w *bufio.Writer, sc *reqScratch, typ repairwire.FrameType, payload []byte) bool {
	var err error
	switch typ {
	case repairwire.FrameNACK:
		sc.entries, err = repairwire.ParseNACK(payload, sc.entries[:0])
		if err != nil {
			s.bad(st, repairwire.StreamBadFrame)
			return false
		}
		s.count(EvRequest, 1)
		if err := s.answerNACK(p, w, sc); err != nil {
			st.CancelWrite(repairwire.StreamSlow)
			st.CancelRead(repairwire.StreamSlow)
			return false
		}
	case repairwire.FrameStreamsReq:
		if len(payload) != 0 {
			s.bad(st, repairwire.StreamBadFrame)
			return false
		}
		s.count(EvRequest, 1)
		_, _ = w.Write(repairwire.AppendStreams(sc.out[:0], s.list()))
	case repairwire.FrameInitReq:
		req, err := repairwire.ParseInitReq(payload)
		if err != nil {
			s.bad(st, repairwire.StreamBadFrame)
			return false
		}
		s.count(EvRequest, 1)
		sc.out = repairwire.AppendInit(sc.out[:0], s.init(req))
		_, _ = w.Write(sc.out)
	case repairwire.FrameReport:
		if s.oldProtocol.Load() {
			s.bad(st, repairwire.StreamBadFrame)
			return false
		}
		// No reply: nothing to flush.
		if !s.report(p.edge, payload) {
			s.bad(st, repairwire.StreamBadFrame)
			return false
		}
		return true
	default:
		s.bad(st, repairwire.StreamBadFrame)
		return false
	}
	// One flush per request: its replies leave together, and a peer that
	// stops reading stalls only this stream until WriteTimeout.
	if err := s.flush(st, w); err != nil {
		st.CancelWrite(repairwire.StreamSlow)
		st.CancelRead(repairwire.StreamSlow)
		return false
	}
	return true
}

func (s *Server) flush(st *quic.Stream, w *bufio.Writer) error {
	if w.Buffered() == 0 {
		return nil
	}
	_ = st.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	return w.Flush()
}

// answerNACK writes the cached packets the entries name, then a GONE frame
// for those not cached and a REFUSED frame for those over the rate limit.
func (s *Server) answerNACK(p *peer, w *bufio.Writer, sc *reqScratch) error {
	sc.gone, sc.refused = sc.gone[:0], sc.refused[:0]
	now := s.cfg.Now()
	repaired := 0
	for _, e := range sc.entries {
		ring := s.ring(e.SSRC)
		sc.seqs = e.AppendSeqs(sc.seqs[:0])
		sc.goneSq, sc.refSq = sc.goneSq[:0], sc.refSq[:0]
		for _, seq := range sc.seqs {
			var ok bool
			if ring != nil {
				sc.pkt, ok = ring.AppendPacket(sc.pkt[:0], seq)
			}
			switch {
			case !ok:
				sc.goneSq = append(sc.goneSq, seq)
			case !p.take(len(sc.pkt)+repairwire.FrameHeaderSize, now):
				sc.refSq = append(sc.refSq, seq)
			default:
				sc.out = repairwire.AppendFrameHeader(sc.out[:0], repairwire.FrameRepair, len(sc.pkt))
				if _, err := w.Write(sc.out); err != nil {
					return err
				}
				if _, err := w.Write(sc.pkt); err != nil {
					return err
				}
				repaired++
				p.edge.repaired.Add(uint64(len(sc.pkt)))
			}
		}
		s.count(EvGone, len(sc.goneSq))
		s.count(EvRefusedRate, len(sc.refSq))
		sc.gone = repairwire.FromSeqs(sc.gone, e.SSRC, sc.goneSq)
		sc.refused = repairwire.FromSeqs(sc.refused, e.SSRC, sc.refSq)
	}
	s.count(EvRepaired, repaired)
	for _, f := range []struct {
		t repairwire.FrameType
		e []repairwire.NACKEntry
	}{{repairwire.FrameGone, sc.gone}, {repairwire.FrameRefused, sc.refused}} {
		if len(f.e) == 0 {
			continue
		}
		sc.out = repairwire.AppendFrameHeader(sc.out[:0], f.t, len(f.e)*repairwire.NACKEntrySize)
		sc.out = repairwire.AppendNACK(sc.out, f.e)
		if _, err := w.Write(sc.out); err != nil {
			return err
		}
	}
	return nil
}

// refusalLogEvery bounds the "repair peer refused" lines: squatters that
// re-handshake by the hundred would otherwise write one line each. Every
// refusal is still counted by its reason.
const refusalLogEvery = 5 * time.Second

// logRefused logs a refused peer at most once per refusalLogEvery, with the
// number of refusals not logged since the last line.
func (s *Server) logRefused(remote string, err error) {
	now := s.cfg.Now()
	s.logMu.Lock()
	if !s.lastRefusalLog.IsZero() && now.Sub(s.lastRefusalLog) < refusalLogEvery {
		s.refusalsUnlogged++
		s.logMu.Unlock()
		return
	}
	unlogged := s.refusalsUnlogged
	s.refusalsUnlogged = 0
	s.lastRefusalLog = now
	s.logMu.Unlock()
	s.cfg.Log.Warn("repair peer refused", "peer", remote, "err", core.Clip(err.Error()), "refused_unlogged", unlogged)
}
