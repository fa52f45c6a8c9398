package repair

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/repairwire"
	"github.com/mediapipe/mediapipe/core/media/rtpheader"
)

var (
	// ErrNotConnected: no session to the server right now; ask again later.
	ErrNotConnected = errors.New("repair: not connected")
	// ErrBusy: the request stream's send window is full; ask again later.
	ErrBusy = errors.New("repair: request stream busy")
	// ErrUnauthorized: the server refused the token.
	ErrUnauthorized = errors.New("repair: server refused the token")
	// ErrClosed: the client was closed.
	ErrClosed = errors.New("repair: client closed")
	// ErrChecking: (VetSSRCs) the server is being asked whether it knows
	// the SSRC; nothing was sent, ask again later.
	ErrChecking = errors.New("repair: asking the server whether it knows the ssrc")
	// ErrUnknownSSRC: (VetSSRCs) the server said it does not know the SSRC;
	// nothing was sent. It is asked again after a back-off.
	ErrUnknownSSRC = errors.New("repair: ssrc unknown to the server")
	// ErrUnknownStream: Init's stream is unknown to the server.
	ErrUnknownStream = errors.New("repair: stream unknown to the server")
)

// Vetting SSRCs (ClientConfig.VetSSRCs).
const (
	maxVetted      = 1 << 14 // SSRCs with a verdict or a check under way; more wait (ErrChecking)
	vetTimeout     = 3 * time.Second
	unknownRecheck = time.Second      // first back-off before asking again about an unknown SSRC
	maxRecheck     = 16 * time.Second // longest back-off
)

// ClientConfig configures a Client. Zero durations take the defaults noted.
type ClientConfig struct {
	Addr       string // server UDP address
	Token      string
	CAFile     string // PEM CA to verify the server with; empty = no verification
	ServerName string // name to verify (default: the host of Addr)
	Log        *slog.Logger

	// Replies. Each is called from the goroutine reading one SSRC's request
	// stream (so calls for different SSRCs may run at once); the slices are
	// valid only during the call. OnRepair gets only packets whose RTP
	// header rtpheader.Check accepted.
	OnRepair  func(ssrc uint32, seq uint16, pkt []byte)
	OnGone    func(ssrc uint32, seqs []uint16)
	OnRefused func(ssrc uint32, seqs []uint16)
	// OnConnect, if set, runs after every successful handshake;
	// OnDisconnect after every session that was up ends (also on Close).
	// Both run on the client's one connecting goroutine, in order.
	OnConnect    func()
	OnDisconnect func()

	MinBackoff  time.Duration // first reconnect delay (default 100 ms)
	MaxBackoff  time.Duration // longest reconnect delay (default 5 s)
	DialTimeout time.Duration // handshake + HELLO (default 3 s)
	IdleTimeout time.Duration // a silent server is given up after this (default 5 s)

	// VetSSRCs makes Nack send nothing for an SSRC until the server has
	// said it knows it (one STREAMS request for all SSRCs new at once, an
	// INIT by SSRC for those it does not list), so data from a stranger,
	// whose SSRCs the cloud never heard of, makes no repair requests. An
	// SSRC found unknown is asked about again after a back-off (1 s
	// doubling to 16 s): a stream the cloud starts later becomes known.
	VetSSRCs bool
	// OnKnown, if set, runs (on the checker goroutine) when the server
	// has said it knows an SSRC: NACKs held back for it may go now.
	OnKnown func(ssrc uint32)
}

// Client keeps one QUIC connection to a repair server, reconnecting with
// back-off, and sends NACKs on one long-lived request stream per SSRC so the
// repair of one stream never waits behind another's.
type Client struct {
	cfg ClientConfig
	tls *tls.Config

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	sess    *session
	up      chan struct{} // closed while a session is up
	lastErr error
	token   string        // the next HELLO's (SetToken changes it)
	retry   chan struct{} // capacity 1: the token changed, end the back-off

	// VetSSRCs: what the current session's server knows. Cleared on every
	// new session (a restarted cloud knows other streams).
	vmu     sync.Mutex
	vetGen  int                     // sessions so far; a check's answer counts only in its own
	vetted  map[uint32]*ssrcVerdict // by SSRC
	toCheck []uint32                // SSRCs waiting for the checker
	vetWake chan struct{}           // capacity 1: there is something to check
}

// ssrcVerdict is what the server said about one SSRC.
type ssrcVerdict struct {
	known     bool
	checking  bool          // queued for or under a check
	recheckAt time.Time     // unknown: when to ask again
	backoff   time.Duration // unknown: the next back-off
}

type session struct {
	c    *Client
	conn *quic.Conn
	ctrl *quic.Stream

	mu     sync.Mutex
	repair map[uint32]*repairStream
	// report carries REPORTs (nil until the first); noReports: the server
	// reset it, so it takes none.
	report    *reportStream
	noReports bool
}

type repairStream struct {
	mu      sync.Mutex
	st      *quic.Stream
	entries []repairwire.NACKEntry
	buf     []byte
}

// Dial starts a client: it connects in the background and keeps connecting
// until Close. It fails only on a bad configuration.
func Dial(cfg ClientConfig) (*Client, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 3 * time.Second
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 5 * time.Second
	}
	if len(cfg.Token) > repairwire.MaxTokenLen {
		return nil, fmt.Errorf("repair: token longer than %d bytes", repairwire.MaxTokenLen)
	}
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("repair: server address %q: %w", cfg.Addr, err)
		}
		cfg.ServerName = host
	}
	t, err := ClientTLS(cfg.CAFile, cfg.ServerName)
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, tls: t, up: make(chan struct{}), token: cfg.Token, retry: make(chan struct{}, 1), vetted: map[uint32]*ssrcVerdict{}, vetWake: make(chan struct{}, 1)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Add(1)
	go c.maintain()
	if cfg.VetSSRCs {
		c.wg.Add(1)
		go c.checker()
	}
	return c, nil
}

// Close ends the session and waits for every goroutine of the client.
func (c *Client) Close() error {
	c.cancel()
	c.wg.Wait()
	return nil
}

// SetToken makes tok the token of every later HELLO. The session up now
// keeps going (the server checked the token when it began); a client
// waiting out its back-off after a refusal tries again at once, so an edge
// given the key the cloud rotated to reconnects without a delay.
func (c *Client) SetToken(tok string) error {
	if len(tok) > repairwire.MaxTokenLen {
		return fmt.Errorf("repair: token longer than %d bytes", repairwire.MaxTokenLen)
	}
	c.mu.Lock()
	changed := c.token != tok
	c.token = tok
	c.mu.Unlock()
	if changed {
		select {
		case c.retry <- struct{}{}:
		default:
		}
	}
	return nil
}

// Connected reports whether a session is up.
func (c *Client) Connected() bool { return c.session() != nil }

// LastError is the error of the last failed connection attempt.
func (c *Client) LastError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// RTT is QUIC's smoothed round-trip estimate of the current session (0 when
// there is none).
func (c *Client) RTT() time.Duration {
	if s := c.session(); s != nil {
		return s.conn.ConnectionStats().SmoothedRTT
	}
	return 0
}

func (c *Client) session() *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess
}

// WaitConnected waits until a session is up.
func (c *Client) WaitConnected(ctx context.Context) error {
	_, err := c.waitSession(ctx)
	return err
}

func (c *Client) waitSession(ctx context.Context) (*session, error) {
	for {
		c.mu.Lock()
		s, up := c.sess, c.up
		c.mu.Unlock()
		if s != nil {
			return s, nil
		}
		select {
		case <-up:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.ctx.Done():
			return nil, ErrClosed
		}
	}
}

func (c *Client) maintain() {
	defer c.wg.Done()
	backoff := c.cfg.MinBackoff
	failures := 0
	for c.ctx.Err() == nil {
		s, err := c.connect()
		if err != nil {
			c.mu.Lock()
			c.lastErr = err
			c.mu.Unlock()
			if failures == 0 || errors.Is(err, ErrUnauthorized) {
				c.cfg.Log.Warn("repair server unreachable, retrying", "addr", c.cfg.Addr, "err", err)
			}
			failures++
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
				backoff = min(backoff*2, c.cfg.MaxBackoff)
			case <-c.retry: // a new token: worth a try now
				t.Stop()
				backoff = c.cfg.MinBackoff
			case <-c.ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		c.cfg.Log.Info("repair server connected", "addr", c.cfg.Addr)
		backoff, failures = c.cfg.MinBackoff, 0
		c.vmu.Lock()
		c.vetGen++
		clear(c.vetted)
		c.toCheck = c.toCheck[:0]
		c.vmu.Unlock()
		c.mu.Lock()
		c.sess, c.lastErr = s, nil
		close(c.up)
		c.mu.Unlock()
		if c.cfg.OnConnect != nil {
			c.cfg.OnConnect()
		}
		select {
		case <-s.conn.Context().Done():
			c.cfg.Log.Warn("repair connection lost", "addr", c.cfg.Addr, "err", context.Cause(s.conn.Context()))
		case <-c.ctx.Done():
			_ = s.conn.CloseWithError(repairwire.CodeNormal, "bye")
		}
		c.mu.Lock()
		c.sess = nil
		c.up = make(chan struct{})
		c.mu.Unlock()
		if c.cfg.OnDisconnect != nil {
			c.cfg.OnDisconnect()
		}
	}
}

func (c *Client) connect() (*session, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.DialTimeout)
	defer cancel()
	conn, err := quic.DialAddr(ctx, c.cfg.Addr, c.tls, &quic.Config{
		HandshakeIdleTimeout:  c.cfg.DialTimeout,
		MaxIdleTimeout:        c.cfg.IdleTimeout,
		KeepAlivePeriod:       c.cfg.IdleTimeout / 4,
		MaxIncomingStreams:    -1,
		MaxIncomingUniStreams: -1,
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", c.cfg.Addr, err)
	}
	// Close must not wait out the hello's deadline (a server stopping at
	// the same moment may never answer): cancelling the client ends it.
	stopWatch := context.AfterFunc(c.ctx, func() { _ = conn.CloseWithError(repairwire.CodeNormal, "closing") })
	defer stopWatch()
	fail := func(err error) (*session, error) {
		_ = conn.CloseWithError(repairwire.CodeNormal, "")
		var ae *quic.ApplicationError
		if errors.As(err, &ae) && ae.ErrorCode == repairwire.CodeUnauthorized {
			return nil, ErrUnauthorized
		}
		return nil, err
	}
	ctrl, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return fail(fmt.Errorf("open control stream: %w", err))
	}
	deadline, _ := ctx.Deadline()
	_ = ctrl.SetDeadline(deadline)
	c.mu.Lock()
	token := c.token
	c.mu.Unlock()
	if _, err := ctrl.Write(repairwire.AppendHello(nil, repairwire.Hello{Version: repairwire.Version, Token: token})); err != nil {
		return fail(fmt.Errorf("send hello: %w", err))
	}
	typ, payload, err := repairwire.NewFrameReader(ctrl, 64).Next()
	if err != nil {
		return fail(fmt.Errorf("read hello reply: %w", err))
	}
	if typ != repairwire.FrameHelloOK {
		return fail(fmt.Errorf("unexpected %s in reply to hello", typ))
	}
	if _, err := repairwire.ParseHelloOK(payload); err != nil {
		return fail(fmt.Errorf("hello reply: %w", err))
	}
	_ = ctrl.SetDeadline(time.Time{})
	return &session{c: c, conn: conn, ctrl: ctrl, repair: map[uint32]*repairStream{}}, nil
}

// Nack asks for the packets seqs of ssrc. It never waits for the network:
// replies come later through OnRepair, OnGone and OnRefused. seqs is sorted
// in place. ErrNotConnected and ErrBusy mean nothing was sent.
func (c *Client) Nack(ssrc uint32, seqs []uint16) error {
	if len(seqs) == 0 {
		return nil
	}
	s := c.session()
	if s == nil {
		return ErrNotConnected
	}
	if c.cfg.VetSSRCs {
		if err := c.vet(ssrc, time.Now()); err != nil {
			return err
		}
	}
	rs, err := s.repairStream(ssrc)
	if err != nil {
		return err
	}
	rs.mu.Lock()
	rs.entries = repairwire.FromSeqs(rs.entries[:0], ssrc, seqs)
	rs.buf = rs.buf[:0]
	for e := rs.entries; len(e) > 0; {
		n := min(len(e), repairwire.MaxNACKEntries)
		rs.buf = repairwire.AppendFrameHeader(rs.buf, repairwire.FrameNACK, n*repairwire.NACKEntrySize)
		rs.buf = repairwire.AppendNACK(rs.buf, e[:n])
		e = e[n:]
	}
	err = rs.st.TryWriteAll(rs.buf)
	rs.mu.Unlock()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, quic.ErrWouldBlock):
		return ErrBusy
	default:
		s.dropRepair(ssrc, rs)
		return fmt.Errorf("repair: nack: %w", err)
	}
}

// Vet (with VetSSRCs) starts asking the server whether it knows ssrc, if
// that is not known or under way already: calling it for a stream's first
// packet has the answer ready before its first gap wants a NACK.
func (c *Client) Vet(ssrc uint32) {
	if c.cfg.VetSSRCs {
		_ = c.vet(ssrc, time.Now())
	}
}

// vet says whether NACKs for ssrc may be sent: nil when the server knows
// it, else ErrChecking (queued for the checker) or ErrUnknownSSRC.
func (c *Client) vet(ssrc uint32, now time.Time) error {
	c.vmu.Lock()
	defer c.vmu.Unlock()
	v := c.vetted[ssrc]
	switch {
	case v == nil:
		if len(c.vetted) >= maxVetted {
			return ErrChecking
		}
		v = &ssrcVerdict{backoff: unknownRecheck}
		c.vetted[ssrc] = v
	case v.known:
		return nil
	case v.checking:
		return ErrChecking
	case now.Before(v.recheckAt):
		return ErrUnknownSSRC
	}
	v.checking = true
	c.toCheck = append(c.toCheck, ssrc)
	select {
	case c.vetWake <- struct{}{}:
	default:
	}
	return ErrChecking
}

// checker answers the SSRCs vet queued, a batch at a time, until Close.
func (c *Client) checker() {
	defer c.wg.Done()
	for {
		select {
		case <-c.vetWake:
		case <-c.ctx.Done():
			return
		}
		c.vmu.Lock()
		gen, batch := c.vetGen, slices.Clone(c.toCheck)
		c.toCheck = c.toCheck[:0]
		c.vmu.Unlock()
		if len(batch) > 0 {
			c.check(gen, batch)
		}
	}
}

// check asks the server about batch: the streams it lists are known; each
// other SSRC is asked about by INIT, which says whether the server has it
// (ended streams, or more than one STREAMS frame holds, are not listed).
// An SSRC the server could not be asked about loses its entry, so the
// next vet queues it again.
func (c *Client) check(gen int, batch []uint32) {
	ctx, cancel := context.WithTimeout(c.ctx, vetTimeout)
	defer cancel()
	listed := map[uint32]bool{}
	if list, err := c.Streams(ctx); err == nil {
		for _, si := range list {
			listed[si.SSRC] = true
		}
	}
	for _, ssrc := range batch {
		known, err := listed[ssrc], error(nil)
		if !known {
			_, err = c.Init(ctx, ssrc, "")
			known = err == nil
			if errors.Is(err, ErrUnknownStream) {
				err = nil
			}
		}
		c.vmu.Lock()
		v := c.vetted[ssrc]
		ours := v != nil && c.vetGen == gen && v.checking
		if ours {
			v.checking = false
			switch {
			case err != nil:
				delete(c.vetted, ssrc)
			case known:
				v.known = true
			default:
				v.recheckAt = time.Now().Add(v.backoff)
				v.backoff = min(v.backoff*2, maxRecheck)
			}
		}
		c.vmu.Unlock()
		if ours && known && c.cfg.OnKnown != nil {
			c.cfg.OnKnown(ssrc)
		}
	}
}

// Forget closes ssrc's request stream (the stream ended on this side).
func (c *Client) Forget(ssrc uint32) {
	c.vmu.Lock()
	if v := c.vetted[ssrc]; v != nil && !v.checking {
		delete(c.vetted, ssrc)
	}
	c.vmu.Unlock()
	if s := c.session(); s != nil {
		s.mu.Lock()
		rs := s.repair[ssrc]
		delete(s.repair, ssrc)
		s.mu.Unlock()
		if rs != nil {
			_ = rs.st.Close()
		}
	}
}

func (s *session) repairStream(ssrc uint32) (*repairStream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rs, ok := s.repair[ssrc]; ok {
		return rs, nil
	}
	st, err := s.conn.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("repair: open request stream: %w", err)
	}
	rs := &repairStream{st: st}
	s.repair[ssrc] = rs
	s.c.wg.Add(1)
	go s.readReplies(ssrc, rs)
	return rs, nil
}

func (s *session) dropRepair(ssrc uint32, rs *repairStream) {
	s.mu.Lock()
	if s.repair[ssrc] == rs {
		delete(s.repair, ssrc)
	}
	s.mu.Unlock()
	rs.st.CancelRead(repairwire.CodeStreamGone)
	rs.st.CancelWrite(repairwire.CodeStreamGone)
}

// readReplies hands the replies on one request stream to the callbacks
// until the stream or the connection ends.
func (s *session) readReplies(ssrc uint32, rs *repairStream) {
	defer s.c.wg.Done()
	defer s.dropRepair(ssrc, rs)
	fr := repairwire.NewFrameReader(rs.st, repairwire.MaxReplyFrame)
	var entries []repairwire.NACKEntry
	var seqs []uint16
	cfg := &s.c.cfg
	for {
		typ, payload, err := fr.Next()
		if err != nil {
			return
		}
		switch typ {
		case repairwire.FrameRepair:
			if _, _, err := rtpheader.Check(payload); err == nil && cfg.OnRepair != nil {
				cfg.OnRepair(rtpheader.SSRC(payload), rtpheader.Seq(payload), payload)
			}
		case repairwire.FrameGone, repairwire.FrameRefused:
			entries, err = repairwire.ParseNACK(payload, entries[:0])
			if err != nil {
				return
			}
			cb := cfg.OnGone
			if typ == repairwire.FrameRefused {
				cb = cfg.OnRefused
			}
			if cb == nil {
				continue
			}
			for _, e := range entries {
				seqs = e.AppendSeqs(seqs[:0])
				cb(e.SSRC, seqs)
			}
		default:
			return
		}
	}
}

// request sends one request frame on a fresh stream and returns the payload
// of the single reply frame of type want.
func (c *Client) request(ctx context.Context, frame []byte, want repairwire.FrameType) ([]byte, error) {
	s, err := c.waitSession(ctx)
	if err != nil {
		return nil, err
	}
	st, err := s.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("repair: open stream: %w", err)
	}
	defer st.CancelRead(0)
	stop := context.AfterFunc(ctx, func() { _ = st.SetDeadline(time.Now()) })
	defer stop()
	if _, err := st.Write(frame); err != nil {
		return nil, fmt.Errorf("repair: send %s: %w", repairwire.FrameType(frame[0]), err)
	}
	_ = st.Close()
	typ, payload, err := repairwire.NewFrameReader(st, repairwire.MaxReplyFrame).Next()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("repair: read reply: %w", err)
	}
	if typ != want {
		return nil, fmt.Errorf("repair: got %s, want %s", typ, want)
	}
	return payload, nil
}

// Streams asks the server for its live streams (waiting for a session).
func (c *Client) Streams(ctx context.Context) ([]repairwire.StreamInfo, error) {
	p, err := c.request(ctx, repairwire.AppendFrameHeader(nil, repairwire.FrameStreamsReq, 0), repairwire.FrameStreams)
	if err != nil {
		return nil, err
	}
	return repairwire.ParseStreams(p)
}

// Init asks for a stream's current init tags, by ssrc (non-zero) or name.
// It returns nil tags and no error when the server knows the stream but has
// no init tags yet, and an error when it does not know the stream.
func (c *Client) Init(ctx context.Context, ssrc uint32, name string) (*core.InitTags, error) {
	p, err := c.request(ctx, repairwire.AppendInitReq(nil, repairwire.InitReq{SSRC: ssrc, Name: name}), repairwire.FrameInit)
	if err != nil {
		return nil, err
	}
	r, err := repairwire.ParseInit(p)
	if err != nil {
		return nil, err
	}
	switch r.Status {
	case repairwire.InitFound:
		return (*core.InitTags)(&r.Tags), nil
	case repairwire.InitNone:
		return nil, nil
	}
	return nil, fmt.Errorf("%w: %q (ssrc %d)", ErrUnknownStream, name, ssrc)
}
