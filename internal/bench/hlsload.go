package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
)

// An LL-HLS audience for measuring a server's cost per HLS viewer: each
// viewer plays like a low-latency player. It loads the playlist (following
// a multivariant one to its first variant), fetches the init section, then
// asks for the next playlist with a blocking reload (_HLS_msn/_HLS_part,
// which the server answers once that part exists) and fetches every part
// that is new in it; a playlist without parts (plain HLS) is polled every
// half target duration and its new segments fetched. Each viewer has its
// own keep-alive connections, at most HLSLoad.Conns, as a browser tab has.

// HLSLoad is one LL-HLS load run.
type HLSLoad struct {
	URL      string        // the playlist: multivariant or media
	Viewers  int           // players at once
	Duration time.Duration // how long they play
	Conns    int           // keep-alive connections per viewer, at most; default 2
	Spread   time.Duration // viewers join evenly over this; default 1 s
	Timeout  time.Duration // one request, a blocking reload included; default 10 s
	CAFile   string        // PEM CA to verify an https server with; "" the system's
	// ServerPID, when not 0, is the server's process (on this machine):
	// its CPU over the run is reported beside the load's own.
	ServerPID int
}

// HLSReport is what an HLSLoad run's viewers did.
type HLSReport struct {
	URL      string  `json:"url"`
	Viewers  int     `json:"viewers"`
	Seconds  float64 `json:"seconds"`
	Started  int     `json:"viewers_started"` // got a media playlist
	Playing  int     `json:"viewers_playing"` // fetched a part or segment in the run's last second
	Requests int64   `json:"requests"`
	// Playlists: reloads answered; Blocking: of them, blocking ones.
	Playlists int64 `json:"playlists"`
	Blocking  int64 `json:"blocking_reloads"`
	Parts     int64 `json:"parts"`
	Segments  int64 `json:"segments"`
	Inits     int64 `json:"inits"`
	Bytes     int64 `json:"bytes"`
	Errors    int64 `json:"errors"`
	// ErrorKinds counts errors by a short description (status or error class).
	ErrorKinds map[string]int64 `json:"error_kinds,omitempty"`
	// Waits of blocking reloads (ms): how long the server held them.
	BlockP50ms float64 `json:"blocking_reload_p50_ms"`
	BlockP99ms float64 `json:"blocking_reload_p99_ms"`
	// ClientCPU is this process's CPU seconds over the run: the load's own
	// cost, to subtract when server and load share a machine.
	ClientCPU float64 `json:"client_cpu_seconds"`
	// ServerCPU is the server process's CPU seconds over the run (with
	// HLSLoad.ServerPID), and ServerCorePerViewer that as a share of one
	// core per viewer (0.001 = 0.1 % of a core).
	ServerCPU           float64 `json:"server_cpu_seconds,omitempty"`
	ServerCorePerViewer float64 `json:"server_core_per_viewer,omitempty"`
}

// hlsCounters are shared by all viewers of a run.
type hlsCounters struct {
	requests, playlists, blocking, parts, segments, inits, bytes, errors atomic.Int64

	mu     sync.Mutex
	kinds  map[string]int64
	waits  []time.Duration // blocking reloads, bounded by maxWaits
	active []atomic.Int64  // per viewer: unix ms of its last media fetch
}

// maxWaits bounds the blocking-reload samples kept (a reservoir would be
// fairer; the first ones are enough for a percentile of a steady run).
const maxWaits = 1 << 16

func (c *hlsCounters) fail(kind string) {
	c.errors.Add(1)
	c.mu.Lock()
	if len(c.kinds) < 32 || c.kinds[kind] > 0 { // a bounded set of kinds
		c.kinds[kind]++
	}
	c.mu.Unlock()
}

// Run plays the load until Duration has passed or ctx ends.
func (l HLSLoad) Run(ctx context.Context) (*HLSReport, error) {
	if l.Conns <= 0 {
		l.Conns = 2
	}
	if l.Spread <= 0 {
		l.Spread = time.Second
	}
	if l.Timeout <= 0 {
		l.Timeout = 10 * time.Second
	}
	if l.Viewers <= 0 || l.Duration <= 0 {
		return nil, errors.New("hls load: viewers and duration must be positive")
	}
	base, err := url.Parse(l.URL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") {
		return nil, fmt.Errorf("hls load: %q is no http(s) URL", l.URL)
	}
	var roots *x509.CertPool
	if l.CAFile != "" {
		pem, err := os.ReadFile(l.CAFile)
		if err != nil {
			return nil, fmt.Errorf("hls load: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("hls load: no certificate in %s", l.CAFile)
		}
	}
	var server0 time.Duration
	if l.ServerPID != 0 {
		if server0, err = procCPU(l.ServerPID); err != nil {
			return nil, fmt.Errorf("hls load: the server's CPU: %w", err)
		}
	}
	c := &hlsCounters{kinds: map[string]int64{}, active: make([]atomic.Int64, l.Viewers)}
	ctx, cancel := context.WithTimeout(ctx, l.Duration)
	defer cancel()
	cpu0 := cpuTime()
	start := time.Now()
	var started atomic.Int64
	var wg sync.WaitGroup
	for i := range l.Viewers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			delay := l.Spread * time.Duration(i) / time.Duration(l.Viewers)
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			tr := &http.Transport{
				Proxy:               nil,
				DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
				MaxConnsPerHost:     l.Conns,
				MaxIdleConnsPerHost: l.Conns,
				IdleConnTimeout:     30 * time.Second,
				TLSClientConfig:     &tls.Config{RootCAs: roots},
				// over HTTPS, HTTP/2 as LL-HLS players use it (a custom
				// TLS config or dialer turns it off unless forced)
				ForceAttemptHTTP2: true,
			}
			defer tr.CloseIdleConnections()
			v := &hlsViewer{c: c, id: i, client: &http.Client{Transport: tr, Timeout: l.Timeout}}
			v.play(ctx, base, &started)
		}()
	}
	wg.Wait()
	took := time.Since(start)
	rep := &HLSReport{
		URL: l.URL, Viewers: l.Viewers, Seconds: took.Seconds(), Started: int(started.Load()),
		Requests: c.requests.Load(), Playlists: c.playlists.Load(), Blocking: c.blocking.Load(),
		Parts: c.parts.Load(), Segments: c.segments.Load(), Inits: c.inits.Load(),
		Bytes: c.bytes.Load(), Errors: c.errors.Load(), ErrorKinds: c.kinds,
		ClientCPU: (cpuTime() - cpu0).Seconds(),
	}
	if l.ServerPID != 0 {
		if server1, err := procCPU(l.ServerPID); err == nil {
			rep.ServerCPU = (server1 - server0).Seconds()
			rep.ServerCorePerViewer = rep.ServerCPU / took.Seconds() / float64(l.Viewers)
		}
	}
	recent := start.Add(took - time.Second).UnixMilli()
	for i := range c.active {
		if c.active[i].Load() >= recent {
			rep.Playing++
		}
	}
	if len(c.waits) > 0 {
		sort.Slice(c.waits, func(i, j int) bool { return c.waits[i] < c.waits[j] })
		rep.BlockP50ms = float64(c.waits[len(c.waits)/2]) / 1e6
		rep.BlockP99ms = float64(c.waits[len(c.waits)*99/100]) / 1e6
	}
	return rep, nil
}

// procCPU is process pid's user + system CPU time so far, from
// /proc/PID/stat (fields 14 and 15, in clock ticks: 100 a second on Linux
// whatever the kernel's HZ).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:]) // f[0] is field 3
	if i < 0 || len(f) < 13 {
		return 0, fmt.Errorf("odd /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("odd /proc/%d/stat", pid)
	}
	return time.Duration(utime+stime) * (time.Second / 100), nil
}

// hlsViewer is one player.
type hlsViewer struct {
	c      *hlsCounters
	id     int
	client *http.Client
	seen   map[string]bool // media URIs of the current playlist already fetched
	next   map[string]bool // rebuilt per playlist: the set stays the playlist's size
}

// maxPlaylist bounds a playlist body: a stranger's server cannot make the
// load client hold more.
const maxPlaylist = 1 << 20

// play runs the viewer until ctx ends or the stream ends (EXT-X-ENDLIST).
func (v *hlsViewer) play(ctx context.Context, u *url.URL, started *atomic.Int64) {
	v.seen, v.next = map[string]bool{}, map[string]bool{}
	var media *playlist.Media
	// The first playlist: a multivariant one leads to its first variant.
	for media == nil {
		pl, err := v.playlist(ctx, u, false)
		if err != nil {
			if !v.pause(ctx, time.Second) {
				return
			}
			continue
		}
		switch p := pl.(type) {
		case *playlist.Media:
			media = p
		case *playlist.Multivariant:
			if len(p.Variants) == 0 {
				v.c.fail("multivariant playlist without variants")
				return
			}
			ref, err := url.Parse(p.Variants[0].URI)
			if err != nil {
				v.c.fail("bad variant URI")
				return
			}
			u = u.ResolveReference(ref)
		}
	}
	started.Add(1)
	if media.Map != nil && media.Map.URI != "" {
		v.fetch(ctx, u, media.Map.URI, &v.c.inits)
	}
	// Join at the live edge: what the first playlist lists is taken as
	// seen but its last part (or segment), as a player starts near the end.
	v.markSeen(media, true)
	for ctx.Err() == nil {
		v.fetchNew(ctx, u, media)
		if media.Endlist {
			return
		}
		q := *u
		blocking := media.ServerControl != nil && media.ServerControl.CanBlockReload
		if blocking {
			// The next part: the one after the last listed of the
			// segment in progress (msn = sequence + complete segments).
			msn := media.MediaSequence + len(media.Segments)
			vals := u.Query()
			vals.Set("_HLS_msn", strconv.Itoa(msn))
			if media.PartInf != nil {
				vals.Set("_HLS_part", strconv.Itoa(len(media.Parts)))
			}
			q.RawQuery = vals.Encode()
		} else {
			wait := time.Duration(max(media.TargetDuration, 1)) * time.Second / 2
			if !v.pause(ctx, wait) {
				return
			}
		}
		pl, err := v.playlist(ctx, &q, blocking)
		if err != nil {
			if !v.pause(ctx, 200*time.Millisecond) {
				return
			}
			continue
		}
		m, ok := pl.(*playlist.Media)
		if !ok {
			v.c.fail("media playlist became multivariant")
			return
		}
		media = m
	}
}

// pause waits d, or false when ctx ends first.
func (v *hlsViewer) pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// mediaURIs calls f with each part's URI of m in order, or each segment's
// when m lists no parts; last says it is the playlist's last one.
func mediaURIs(m *playlist.Media, f func(uri string, part, last bool)) {
	var uris []string
	parts := len(m.Parts) > 0
	for _, s := range m.Segments {
		if len(s.Parts) > 0 {
			parts = true
		}
	}
	for _, s := range m.Segments {
		if !parts {
			uris = append(uris, s.URI)
			continue
		}
		for _, p := range s.Parts {
			uris = append(uris, p.URI)
		}
	}
	for _, p := range m.Parts {
		uris = append(uris, p.URI)
	}
	for i, u := range uris {
		f(u, parts, i == len(uris)-1)
	}
}

// markSeen takes m's media as fetched; keepLast leaves its last one out.
func (v *hlsViewer) markSeen(m *playlist.Media, keepLast bool) {
	mediaURIs(m, func(uri string, _, last bool) {
		if !(keepLast && last) {
			v.seen[uri] = true
		}
	})
}

// fetchNew fetches what m lists that v has not fetched, in order, and
// forgets URIs m no longer lists.
func (v *hlsViewer) fetchNew(ctx context.Context, u *url.URL, m *playlist.Media) {
	clear(v.next)
	mediaURIs(m, func(uri string, part, _ bool) {
		if !v.seen[uri] && ctx.Err() == nil {
			counter := &v.c.segments
			if part {
				counter = &v.c.parts
			}
			if v.fetch(ctx, u, uri, counter) {
				v.c.active[v.id].Store(time.Now().UnixMilli())
			}
		}
		v.next[uri] = true
	})
	v.seen, v.next = v.next, v.seen
}

// playlist GETs and parses a playlist.
func (v *hlsViewer) playlist(ctx context.Context, u *url.URL, blocking bool) (playlist.Playlist, error) {
	began := time.Now()
	body, err := v.get(ctx, u.String(), maxPlaylist)
	if err != nil {
		return nil, err
	}
	pl, err := playlist.Unmarshal(body)
	if err != nil {
		v.c.fail("unparsable playlist")
		return nil, err
	}
	v.c.playlists.Add(1)
	if blocking {
		v.c.blocking.Add(1)
		v.c.mu.Lock()
		if len(v.c.waits) < maxWaits {
			v.c.waits = append(v.c.waits, time.Since(began))
		}
		v.c.mu.Unlock()
	}
	return pl, nil
}

// fetch GETs uri (relative to u) to the end, counting it; false on failure.
func (v *hlsViewer) fetch(ctx context.Context, u *url.URL, uri string, counter *atomic.Int64) bool {
	ref, err := url.Parse(uri)
	if err != nil {
		v.c.fail("bad media URI")
		return false
	}
	if _, err := v.get(ctx, u.ResolveReference(ref).String(), 0); err != nil {
		return false
	}
	counter.Add(1)
	return true
}

// get makes one GET, counting it and its bytes; the body is returned when
// keep > 0 (at most keep bytes), else read and discarded.
func (v *hlsViewer) get(ctx context.Context, target string, keep int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		v.c.fail("bad URL")
		return nil, err
	}
	v.c.requests.Add(1)
	resp, err := v.client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			v.c.fail(errKind(err))
		}
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		v.c.fail("status " + strconv.Itoa(resp.StatusCode))
		return nil, fmt.Errorf("GET %s: %s", target, resp.Status)
	}
	var body []byte
	var n int64
	if keep > 0 {
		body, err = io.ReadAll(io.LimitReader(resp.Body, keep))
		n = int64(len(body))
	} else {
		n, err = io.Copy(io.Discard, resp.Body)
	}
	v.c.bytes.Add(n)
	if err != nil {
		if ctx.Err() == nil {
			v.c.fail(errKind(err))
		}
		return nil, err
	}
	return body, nil
}

// errKind names an error's class for the report, not its addresses.
func errKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected EOF"
	}
	return "other"
}

// hlsMain runs `mediapipe bench --hls-url` and returns the exit code.
func hlsMain(ctx context.Context, cfg Config, asJSON bool, stdout, stderr io.Writer) int {
	rep, err := HLSLoad{URL: cfg.HLSURL, Viewers: cfg.HLSViewers, Duration: cfg.Duration, Conns: cfg.HLSConns,
		CAFile: cfg.HLSCA, ServerPID: cfg.HLSServerPID}.Run(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "mediapipe bench:", err)
		return 2
	}
	if !printReport(stdout, stderr, asJSON, rep, rep.writeTable) {
		return 1
	}
	if rep.Errors > 0 {
		fmt.Fprintf(stderr, "mediapipe bench: %d HLS requests failed\n", rep.Errors)
		return 1
	}
	return 0
}

// writeTable prints the report for a person.
func (r *HLSReport) writeTable(w io.Writer) {
	per := func(n int64) string { return fmt.Sprintf("%d (%.1f/s)", n, float64(n)/max(r.Seconds, 1e-9)) }
	fmt.Fprintf(w, "HLS load of %s: %d viewers for %.1fs\n", r.URL, r.Viewers, r.Seconds)
	fmt.Fprintf(w, "  viewers started %d, playing at the end %d\n", r.Started, r.Playing)
	fmt.Fprintf(w, "  requests        %s\n", per(r.Requests))
	fmt.Fprintf(w, "  playlists       %s, blocking %d (held p50 %.0fms, p99 %.0fms)\n", per(r.Playlists), r.Blocking, r.BlockP50ms, r.BlockP99ms)
	fmt.Fprintf(w, "  parts           %s\n", per(r.Parts))
	fmt.Fprintf(w, "  segments        %s\n", per(r.Segments))
	fmt.Fprintf(w, "  init sections   %d\n", r.Inits)
	fmt.Fprintf(w, "  received        %.1f MB (%.1f Mbit/s)\n", float64(r.Bytes)/1e6, float64(r.Bytes)*8/1e6/max(r.Seconds, 1e-9))
	fmt.Fprintf(w, "  errors          %d %v\n", r.Errors, r.ErrorKinds)
	fmt.Fprintf(w, "  load client CPU %.2fs (%.1f%% of a core)\n", r.ClientCPU, 100*r.ClientCPU/max(r.Seconds, 1e-9))
	if r.ServerCPU > 0 {
		fmt.Fprintf(w, "  server CPU      %.2fs (%.1f%% of a core; %.3f%% of a core per viewer)\n",
			r.ServerCPU, 100*r.ServerCPU/max(r.Seconds, 1e-9), 100*r.ServerCorePerViewer)
	}
}
