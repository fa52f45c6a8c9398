package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mediapipe/mediapipe/host"
)

// SoakReport is what `mediapipe bench --soak` measured.
type SoakReport struct {
	Command  string   `json:"command"`
	Duration string   `json:"duration"`
	Samples  int      `json:"samples"`
	Every    string   `json:"sample_every"`
	Figures  []Trend  `json:"figures"`
	Load     SoakLoad `json:"load"`
	Errors   []string `json:"errors,omitempty"`
	Failed   []string `json:"failed,omitempty"` // why the soak failed; empty: passed
}

// SoakLoad counts what the soak did to the relay and what viewers got.
type SoakLoad struct {
	Streams        int                `json:"stream_slots"`
	Publishes      uint64             `json:"publishes"`       // publisher sessions started
	PublishErrors  uint64             `json:"publish_errors"`  // sessions that ended in an error
	ViewerSessions uint64             `json:"viewer_sessions"` // viewer sessions started
	Matched        uint64             `json:"tags_matched"`
	Corrupt        uint64             `json:"tags_corrupt"`
	Unknown        uint64             `json:"tags_unknown"`
	PluginKills    uint64             `json:"plugin_kills"`
	PluginRestarts uint64             `json:"plugin_restarts"`
	Junk           map[string]uint64  `json:"junk"` // what was sent, by listener
	Drops          map[string]float64 `json:"drops"`
	Loss           float64            `json:"loss"`
}

// soak is one running soak: the relay, the figures sampled and the counts.
type soak struct {
	cfg  Config
	rl   *relay
	clip *clip

	publishes, publishErrors, viewerSessions atomic.Uint64
	matched, corrupt, unknown                atomic.Uint64
	kills, restarts                          atomic.Uint64
	junkUDP, junkQUIC, junkRTMP, junkHTTP    atomic.Uint64

	mu   sync.Mutex
	errs []string
}

func (s *soak) fail(format string, a ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errs) < 20 {
		s.errs = append(s.errs, fmt.Sprintf(format, a...))
	}
}

// RunSoak runs the relay for cfg.Soak under churn, loss, plugin kills and
// junk, sampling the process's figures every cfg.SoakEvery.
func RunSoak(ctx context.Context, cfg Config, stderr io.Writer) (*SoakReport, error) {
	cfg.defaults()
	if cfg.SoakEvery <= 0 {
		cfg.SoakEvery = min(max(cfg.Soak/200, time.Second), 5*time.Second)
	}
	cl, err := pickClip(cfg, stderr)
	if err != nil {
		return nil, err
	}
	rl, err := launchRelay(ctx, cfg, stderr)
	if err != nil {
		return nil, err
	}
	if err := waitRepair(ctx, rl.rt, 10*time.Second); err != nil {
		_ = rl.stop()
		return nil, err
	}
	s := &soak{cfg: cfg, rl: rl, clip: cl}
	runCtx, cancel := context.WithTimeout(ctx, cfg.Soak)
	defer cancel()

	var wg sync.WaitGroup
	for i := range cfg.Streams {
		wg.Add(1)
		go func() { defer wg.Done(); s.slot(runCtx, i) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); s.junk(runCtx) }()
	if cfg.Plugin != "" {
		wg.Add(1)
		go func() { defer wg.Done(); s.killPlugin(runCtx) }()
	}
	start := time.Now()
	var ts []float64
	vals := make([][]float64, len(soakFigures))
	tick := time.NewTicker(cfg.SoakEvery)
	defer tick.Stop()
	for done := false; !done; {
		x := procSample()
		ts = append(ts, time.Since(start).Seconds())
		for i := range vals {
			vals[i] = append(vals[i], x[i])
		}
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "\r%5.0fs  rss %.0f MB  goroutines %.0f  fds %.0f  tcp mem %.0f KB  publishes %d  viewers %d  kills %d/%d  corrupt %d   ",
				ts[len(ts)-1], x[0], x[1], x[2], x[3], s.publishes.Load(), s.viewerSessions.Load(), s.restarts.Load(), s.kills.Load(), s.corrupt.Load()+s.unknown.Load())
		}
		select {
		case <-runCtx.Done():
			done = true
		case <-tick.C:
		}
	}
	if cfg.Progress != nil {
		fmt.Fprintln(cfg.Progress)
	}
	wg.Wait()
	drops := gather(rl.rt.Metrics.Registry).drops()
	relayErr := rl.stop()

	rep := &SoakReport{Duration: cfg.Soak.String(), Samples: len(ts), Every: cfg.SoakEvery.String()}
	for i, f := range soakFigures {
		rep.Figures = append(rep.Figures, trendOf(f, ts, vals[i]))
	}
	rep.Load = SoakLoad{
		Streams: cfg.Streams, Publishes: s.publishes.Load(), PublishErrors: s.publishErrors.Load(),
		ViewerSessions: s.viewerSessions.Load(), Matched: s.matched.Load(), Corrupt: s.corrupt.Load(), Unknown: s.unknown.Load(),
		PluginKills: s.kills.Load(), PluginRestarts: s.restarts.Load(), Drops: drops, Loss: cfg.Loss,
		Junk: map[string]uint64{"udp-source": s.junkUDP.Load(), "repair (quic)": s.junkQUIC.Load(), "rtmp": s.junkRTMP.Load(), "http": s.junkHTTP.Load()},
	}
	rep.Errors = s.errs
	if relayErr != nil {
		rep.Errors = append(rep.Errors, "relay: "+relayErr.Error())
	}
	rep.judge(ctx.Err() != nil)
	return rep, nil
}

// judge states why the soak failed: a figure that grows, a corrupt tag, a
// plugin that did not come back, the relay failing, nothing flowing.
func (r *SoakReport) judge(interrupted bool) {
	for _, f := range r.Figures {
		if f.Grows {
			r.Failed = append(r.Failed, fmt.Sprintf("%s grows without bound: +%.1f%s over the second half, limit %.1f", f.Name, f.Rise, f.Unit, f.Limit))
		}
	}
	if n := r.Load.Corrupt + r.Load.Unknown; n > 0 {
		r.Failed = append(r.Failed, fmt.Sprintf("%d corrupt or never-published tags reached viewers", n))
	}
	if r.Load.Matched == 0 {
		r.Failed = append(r.Failed, "no viewer got a published tag")
	}
	if r.Load.PluginKills > r.Load.PluginRestarts {
		r.Failed = append(r.Failed, fmt.Sprintf("the plugin was killed %d times and restarted %d", r.Load.PluginKills, r.Load.PluginRestarts))
	}
	if len(r.Errors) > 0 {
		r.Failed = append(r.Failed, fmt.Sprintf("%d errors (listed above)", len(r.Errors)))
	}
	if interrupted {
		r.Failed = append(r.Failed, "interrupted")
	}
}

// randDur is a random duration in [lo, hi).
func randDur(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	n, err := rand.Int(rand.Reader, big.NewInt(int64(hi-lo)))
	if err != nil {
		return lo
	}
	return lo + time.Duration(n.Int64())
}

// sleepCtx waits d or until ctx ends; false when ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// lifetimes of a publisher session and of a viewer session: a few within
// even a short soak, so every stream comes and goes several times.
func (s *soak) lifetimes() (pubLo, pubHi, viewLo, viewHi time.Duration) {
	pubHi = min(max(s.cfg.Soak/4, 10*time.Second), 90*time.Second)
	viewHi = min(max(pubHi/3, 4*time.Second), 30*time.Second)
	return pubHi / 3, pubHi, viewHi / 4, viewHi
}

// slot publishes stream slot i again and again under a new name each time
// (an edge may serve an old session's cached tags to a viewer of a name
// reused at once), each session watched by cfg.Viewers viewers that come
// and go.
func (s *soak) slot(ctx context.Context, i int) {
	pubLo, pubHi, viewLo, viewHi := s.lifetimes()
	for run := 1; ctx.Err() == nil; run++ {
		pb := &publisher{addr: s.rl.ports.RTMP, app: "live", key: fmt.Sprintf("%s-%d", streamKey(i), run), clip: s.clip, ledger: newLedger()}
		pctx, pcancel := context.WithTimeout(ctx, randDur(pubLo, pubHi))
		s.publishes.Add(1)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := pb.run(pctx); err != nil && pctx.Err() == nil {
				s.publishErrors.Add(1)
				s.fail("%v", err)
			}
		}()
		for range s.cfg.Viewers {
			wg.Add(1)
			go func() { defer wg.Done(); s.watch(pctx, pb, viewLo, viewHi) }()
		}
		wg.Wait()
		pcancel()
		if !sleepCtx(ctx, randDur(200*time.Millisecond, 2*time.Second)) {
			return
		}
	}
}

// watch plays pb's stream in sessions of random length until ctx ends,
// adding what each session's tags were to the soak's counts.
func (s *soak) watch(ctx context.Context, pb *publisher, lo, hi time.Duration) {
	for sleepCtx(ctx, randDur(0, lo)) {
		v := &viewer{addr: s.rl.ports.HTTP, path: "/live/" + pb.key + ".flv", ledger: pb.ledger, idle: s.cfg.ViewerIdle, lat: &histogram{}}
		vctx, cancel := context.WithTimeout(ctx, randDur(lo, hi))
		s.viewerSessions.Add(1)
		v.run(vctx)
		cancel()
		s.matched.Add(v.matched.Load())
		s.corrupt.Add(v.corrupt.Load())
		s.unknown.Add(v.unknown.Load())
	}
}

// killPlugin kills the plugin stage's process now and then and checks the
// host starts a new one.
func (s *soak) killPlugin(ctx context.Context) {
	every := min(max(s.cfg.Soak/12, 10*time.Second), 60*time.Second)
	for sleepCtx(ctx, randDur(every/2, every)) {
		st := pluginOf(s.rl.rt)
		if st == nil {
			s.fail("no plugin stage in the edge pipeline")
			return
		}
		pid := st.PID()
		if pid <= 0 {
			continue // between a death and its restart
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			s.fail("kill plugin %d: %v", pid, err)
			continue
		}
		s.kills.Add(1)
		// Wait out the restart even when the soak's time is up meanwhile:
		// the relay runs until this returns, and a kill near the end must
		// be seen to come back too.
		deadline := time.Now().Add(15 * time.Second)
		for {
			if p := st.PID(); p > 0 && p != pid {
				s.restarts.Add(1)
				break
			}
			if time.Now().After(deadline) {
				s.fail("plugin killed (pid %d) not restarted within 15s", pid)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// pluginOf is the first stage of rt that runs in a process of its own.
func pluginOf(rt *host.Runtime) interface{ PID() int } {
	for _, p := range rt.Pipelines {
		for _, rs := range p.Stages {
			if st, ok := rs.Stage.(interface{ PID() int }); ok {
				return st
			}
		}
	}
	return nil
}

// junk throws something at one of the relay's listeners every few hundred
// milliseconds: what a stranger on the network might send.
func (s *soak) junk(ctx context.Context) {
	p := s.rl.ports
	kinds := []func(){
		func() { s.junkUDP.Add(uint64(sendUDP(p.UDP, false))) },
		func() { s.junkQUIC.Add(uint64(sendUDP(p.RTX, true))) },
		func() { s.junkRTMP.Add(sendTCP(ctx, p.RTMP, nil)) },
		func() { s.junkHTTP.Add(sendTCP(ctx, p.HTTP, nil)) },
		func() { s.junkHTTP.Add(sendTCP(ctx, p.HTTP, badRequests)) },
	}
	for i := 0; sleepCtx(ctx, randDur(100*time.Millisecond, 500*time.Millisecond)); i++ {
		kinds[i%len(kinds)]()
	}
}

// sendUDP sends a burst of random datagrams to addr; quicLike makes them
// look like QUIC Initial packets (long header, version 1) with junk after.
func sendUDP(addr string, quicLike bool) int {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return 0
	}
	defer c.Close()
	n := 0
	for range 20 {
		b := make([]byte, 1+randDur(0, 1400))
		_, _ = rand.Read(b)
		if quicLike && len(b) > 5 {
			b[0] = 0xc0 | b[0]&0x0f
			b[1], b[2], b[3], b[4] = 0, 0, 0, 1
		}
		if _, err := c.Write(b); err == nil {
			n++
		}
	}
	return n
}

// badRequests are malformed or hostile HTTP requests.
var badRequests = [][]byte{
	[]byte("GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n"),
	[]byte("GET /live/%zz.flv HTTP/1.1\r\nHost: x\r\n\r\n"),
	[]byte("BREW /live/s001-1.flv HTTP/1.1\r\nHost: x\r\n\r\n"),
	[]byte("GET /live/" + string(make([]byte, 9000)) + ".flv HTTP/1.1\r\nHost: x\r\n\r\n"),
	[]byte("GET /live/s001-1.flv HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"),
	[]byte("GET /live/s001-1.flv HTTP/9.9\r\n\r\n"),
	[]byte("GET /live/s001-1.flv HTTP/1.1\r\nHost: x\r\nX: " + string(make([]byte, 70000)) + "\r\n\r\n"),
	[]byte("GET /live/s001-1.flv HTTP/1.1\r\nHo"), // and hang up
}

// sendTCP connects to addr, writes one of msgs (random bytes when nil),
// reads for a moment and hangs up; it returns how many connections it made.
func sendTCP(ctx context.Context, addr string, msgs [][]byte) uint64 {
	d := net.Dialer{Timeout: 2 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	var b []byte
	if msgs == nil {
		b = make([]byte, 1+randDur(0, 4096))
		_, _ = rand.Read(b)
	} else {
		b = msgs[int(randDur(0, time.Duration(len(msgs))))]
	}
	_, _ = c.Write(b)
	buf := make([]byte, 4096)
	for {
		if _, err := c.Read(buf); err != nil { // EOF, reset or the deadline
			return 1
		}
	}
}
