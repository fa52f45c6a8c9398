// Package quicretransmit is the quic-retransmit stage: it passes RTP packets
// on unchanged, caches the last ones of each SSRC and serves repairs over QUIC.
package quicretransmit

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/control"
	"github.com/mediapipe/mediapipe/core/media/repairwire"
	"github.com/mediapipe/mediapipe/core/media/rtpheader"
	"github.com/mediapipe/mediapipe/internal/repair"
)

// sample is an example [[pipeline.stage]] block for this stage, carried in
// its spec; stages/all checks that it validates.
//
//go:embed sample.toml
var sample string

// RetainAfterEnd is how long a stream's cache keeps answering after its end,
// so repairs of its last packets still work.
const RetainAfterEnd = 5 * time.Second

// Config is quic-retransmit's parameters.
type Config struct {
	Listen       string `param:"listen" required:"true" addr:"true" doc:"UDP address of the QUIC repair server (ALPN mediapipe-rtx/1), e.g. 127.0.0.1:4242"`
	CachePackets int    `param:"cache_packets" default:"5000" min:"16" max:"32768" doc:"most packets kept per stream (per SSRC) for repair: a hard cap beside cache_duration"`
	// CacheDuration is a time.Duration like the other stages' durations.
	CacheDuration time.Duration `param:"cache_duration" default:"5s" min:"0" max:"600" doc:"packets of each stream are kept for repair this long after they arrive (and at most cache_packets), so the cache's memory follows each stream's rate: about rate × cache_duration per stream; keep it well above the edges' rtp-reorder latency plus a few round trips; 0 keeps cache_packets of every stream whatever their age (preallocated)"`
	Token         string        `param:"token" secret:"true" live:"true" doc:"when set, edges must present this token; others get nothing. On a reload, a new token admits new edge connections that present it and refuses the old one from then on; edges already connected keep their connection"`
	MaxRate       int           `param:"max_rate" default:"20000000" min:"0" live:"true" doc:"bytes/s of repaired packets per edge connection; beyond it requests are refused and counted (0 = no limit). On a reload, a new rate applies to the edges already connected from their next request (lowering it trims what each may still burst)"`
	TotalRate     int           `param:"total_rate" default:"0" min:"0" live:"true" doc:"bytes/s of repaired packets shared by all edge connections; each edge then gets at most min(max_rate, its share): the share the transmission controller sets (docs/control.md), or else an equal part of what the set shares leave but at least total_rate / connected edges (the set shares scaled down to fit), recomputed as they come and go. 0: no shared budget, each edge limited by max_rate alone, first come first served. Live on reload"`
	MaxPeers      int           `param:"max_peers" default:"64" min:"1" max:"4096" doc:"most edge connections served at once; one more that presents the token is closed (code 0x106) and counted as refused_peers"`
	Cert          string        `param:"cert" doc:"PEM certificate file for TLS (with key); empty: a self-signed certificate made at start"`
	Key           string        `param:"key" doc:"PEM private key file for cert"`
}

// Validate checks the rules spanning fields.
func (c *Config) Validate() error {
	if (c.Cert == "") != (c.Key == "") {
		return errors.New("cert: cert and key must be given together")
	}
	if len(c.Token) > repairwire.MaxTokenLen {
		return fmt.Errorf("token: longer than %d bytes", repairwire.MaxTokenLen)
	}
	return nil
}

func init() {
	core.Register(core.Spec{
		Name:    "quic-retransmit",
		Summary: "passes RTP packets through, keeps each stream's packets of the last cache_duration (at most cache_packets) and serves repair requests (batched NACKs, stream list, init tags) over QUIC",
		In:      core.KindRTP,
		Out:     core.KindRTP,
		Sample:  sample,
	}, New)
}

// The transmission controller shares total_rate among the edges through it.
var _ control.RepairSharer = (*Stage)(nil)

// Stage is a running quic-retransmit.
type Stage struct {
	cfg *Config
	env *core.Env
	srv *repair.Server

	streams map[*core.Stream]*streamState
	retire  []retiring

	notRTP  prometheus.Counter // counted, but still passed on
	peers   prometheus.Gauge
	cached  prometheus.Gauge
	bytes   prometheus.Gauge
	opened  bool
	openErr error
}

type streamState struct {
	ssrc uint32
	ring *repair.Ring
}

type retiring struct {
	ssrc uint32
	at   time.Time
}

// cacheDuration maps the param to ServerConfig's: there 0 means the
// default and a negative value no maximum age.
func cacheDuration(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// New builds a quic-retransmit stage; Open binds it.
func New(cfg *Config, env *core.Env) (core.Stage, error) {
	m := env.Metrics
	var (
		requests = m.Counter("requests")
		repaired = m.Counter("repaired_sent")
		gone     = m.Counter("gone")
		refused  = m.Drop("refused_rate")
		auth     = m.Drop("auth_failed")
		bad      = m.Drop("bad_request")
		full     = m.Drop("refused_peers")
		idle     = m.Counter("idle_streams_closed")
		evicted  = m.Drop("evicted_unauth")
		junk     = m.Drop("junk")
		reports  = m.Counter("reports_received")
		badRep   = m.Drop("bad_report")
	)
	srv, err := repair.NewServer(repair.ServerConfig{
		Addr: cfg.Listen, Token: cfg.Token, MaxRate: cfg.MaxRate, TotalRate: cfg.TotalRate,
		CertFile: env.Path(cfg.Cert), KeyFile: env.Path(cfg.Key),
		CachePackets: cfg.CachePackets, CacheDuration: cacheDuration(cfg.CacheDuration),
		MaxPeers: cfg.MaxPeers, Log: env.Log,
		Count: func(ev repair.Event, n int) {
			switch ev {
			case repair.EvRequest:
				requests.Add(float64(n))
			case repair.EvRepaired:
				repaired.Add(float64(n))
			case repair.EvGone:
				gone.Add(float64(n))
			case repair.EvRefusedRate:
				refused.Add(n)
			case repair.EvAuthFailed:
				auth.Add(n)
			case repair.EvBadRequest:
				bad.Add(n)
			case repair.EvRefusedPeer:
				full.Add(n)
			case repair.EvIdleStream:
				idle.Add(float64(n))
			case repair.EvEvicted:
				evicted.Add(n)
			case repair.EvJunk:
				junk.Add(n)
			case repair.EvReport:
				reports.Add(float64(n))
			case repair.EvBadReport:
				badRep.Add(n)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	return &Stage{
		cfg: cfg, env: env, srv: srv,
		streams: map[*core.Stream]*streamState{},
		notRTP:  m.Counter("not_rtp_uncached"),
		peers:   m.Gauge("peers"),
		cached:  m.Gauge("cached_streams"),
		bytes:   m.Gauge("cache_bytes"),
	}, nil
}

// Open binds the QUIC listener, so "address in use" fails before start.
func (s *Stage) Open(ctx context.Context) error {
	if s.opened {
		return s.openErr
	}
	s.opened = true
	s.openErr = s.srv.Listen()
	return s.openErr
}

// Addr is the repair server's bound address (nil before Open).
func (s *Stage) Addr() net.Addr { return s.srv.Addr() }

// Server gives tests access to the repair server.
func (s *Stage) Server() *repair.Server { return s.srv }

// Run passes packets on, caching each, and serves repairs until in closes.
func (s *Stage) Run(ctx context.Context, in <-chan *core.Packet, out core.Output) error {
	if err := s.Open(ctx); err != nil {
		return err
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- s.srv.Serve(sctx) }()
	defer func() {
		stop()
		if err := <-served; err != nil {
			s.env.Log.Error("repair server", "err", err)
		}
	}()

	tick := s.env.Clock.NewTimer(core.UntilAligned(s.env.Clock.Now(), time.Second))
	defer tick.Stop()
	for {
		select {
		case p, ok := <-in:
			if !ok {
				return nil
			}
			s.handle(p, out)
		case <-tick.C():
			s.housekeep()
			tick.Reset(core.UntilAligned(s.env.Clock.Now(), time.Second))
		}
	}
}

func (s *Stage) handle(p *core.Packet, out core.Output) {
	switch p.Event {
	case core.EventStart:
		if _, ok := s.streams[p.Stream]; !ok {
			s.streams[p.Stream] = &streamState{}
		}
	case core.EventEnd:
		if st, ok := s.streams[p.Stream]; ok {
			if st.ring != nil {
				s.end(st.ssrc)
			}
			delete(s.streams, p.Stream)
		}
	default:
		st := s.streams[p.Stream]
		if st == nil { // data before start: cache it all the same
			st = &streamState{}
			s.streams[p.Stream] = st
		}
		if _, _, err := rtpheader.Check(p.Data); err != nil {
			s.notRTP.Inc()
			break
		}
		seq, ssrc := rtpheader.Seq(p.Data), rtpheader.SSRC(p.Data)
		if st.ring == nil || st.ssrc != ssrc {
			if st.ring != nil {
				s.end(st.ssrc)
			}
			st.ssrc, st.ring = ssrc, s.srv.Stream(ssrc, p.Stream)
			s.env.Log.Info("caching stream", "stream", p.Stream.Name, "ssrc", ssrc)
		}
		st.ring.InsertAt(seq, p.Data, s.env.Clock.Now())
	}
	out.Emit(p)
}

// Reconfigure applies a new token, max_rate and total_rate to the running
// repair server: edges already connected keep their connection, new ones
// need the new token, every edge's limiter takes the new rates from its
// next request. Any other parameter needs a restart.
func (s *Stage) Reconfigure(cfg *Config) error {
	rest := *cfg
	rest.Token, rest.MaxRate, rest.TotalRate = s.cfg.Token, s.cfg.MaxRate, s.cfg.TotalRate
	if rest != *s.cfg {
		return fmt.Errorf("quic-retransmit: %w: only token, max_rate and total_rate change in place", core.ErrNotLive)
	}
	if cfg.TotalRate < 0 {
		return fmt.Errorf("quic-retransmit: total_rate %d is negative", cfg.TotalRate)
	}
	// Validate bounded both, so neither can fail half way.
	if err := s.srv.SetToken(cfg.Token); err != nil {
		return fmt.Errorf("quic-retransmit: %w", err)
	}
	if err := s.srv.SetMaxRate(cfg.MaxRate); err != nil {
		return fmt.Errorf("quic-retransmit: %w", err)
	}
	_ = s.srv.SetTotalRate(cfg.TotalRate) // checked above
	s.env.Log.Info("quic-retransmit reconfigured", "auth", cfg.Token != "", "max_rate", cfg.MaxRate, "total_rate", cfg.TotalRate)
	return nil
}

// RepairBudget is total_rate, the bytes/s of repairs the edges share
// (control.RepairSharer); 0: none.
func (s *Stage) RepairBudget() int { return s.srv.TotalRate() }

// SetRepairRates sets the listed edges' repair rates in bytes/s (by
// core.Edge.ID); the other connected edges share what is left equally,
// with a floor of total_rate / edges, the set rates scaled to fit
// (control.RepairSharer). Without a total_rate it changes nothing until
// one is set. Safe from any goroutine.
func (s *Stage) SetRepairRates(rates map[int]int) { s.srv.SetShares(rates) }

// RepairedBytes is the bytes repaired so far to each connected edge, by
// core.Edge.ID (control.RepairSharer).
func (s *Stage) RepairedBytes() map[int]uint64 { return s.srv.RepairedBytes() }

// end keeps ssrc's cache answering for RetainAfterEnd, then frees it.
func (s *Stage) end(ssrc uint32) {
	s.srv.EndStream(ssrc)
	s.retire = append(s.retire, retiring{ssrc: ssrc, at: s.env.Clock.Now().Add(RetainAfterEnd)})
}

func (s *Stage) housekeep() {
	now := s.env.Clock.Now()
	keep := s.retire[:0]
	for _, r := range s.retire {
		if now.Before(r.at) {
			keep = append(keep, r)
			continue
		}
		if !s.live(r.ssrc) {
			s.srv.Remove(r.ssrc)
		}
	}
	s.retire = keep
	st := s.srv.Stats()
	s.peers.Set(float64(st.Peers))
	s.cached.Set(float64(st.Streams))
	s.bytes.Set(float64(s.srv.CacheBytes()))
}

// live reports whether a current stream (re)uses ssrc.
func (s *Stage) live(ssrc uint32) bool {
	for _, st := range s.streams {
		if st.ring != nil && st.ssrc == ssrc {
			return true
		}
	}
	return false
}

// Edges returns the connected edges and each one's latest report per
// stream (core.EdgeReporter): what GET /api/edges and the per-edge metrics
// show, and what a transmission controller reads. Copies, by ID.
func (s *Stage) Edges() []core.Edge {
	states := s.srv.Edges()
	out := make([]core.Edge, 0, len(states))
	for _, e := range states {
		ce := core.Edge{ID: e.Slot, Addr: e.Addr, Since: e.Since, Streams: make([]core.EdgeStream, 0, len(e.Reports))}
		for _, r := range e.Reports {
			ce.Streams = append(ce.Streams, core.EdgeStream{
				Stream: r.Stream, SSRC: r.SSRC, At: r.At,
				FractionLost: r.FractionLost(), CumulativeLost: r.RR.TotalLost, HighestSeq: r.RR.LastSequenceNumber,
				JitterMS: float64(r.RR.Jitter), RTTSeconds: r.RTT.Seconds(),
				Repaired: r.Repaired, Skipped: r.Skipped,
				WaitMeanMS: float64(r.WaitMeanUS) / 1000, WaitMaxMS: float64(r.WaitMaxUS) / 1000,
				DeliveryBps: r.Delivered,
			})
		}
		out = append(out, ce)
	}
	return out
}
