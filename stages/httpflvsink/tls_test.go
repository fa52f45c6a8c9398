package httpflvsink_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/internal/testcert"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
	"github.com/mediapipe/mediapipe/stages/httpflvsink"
)

// tlsSink is a sink serving HTTPS with pair, and a client that trusts its CA.
type tlsSink struct {
	*sink
	addr   string
	client *http.Client
	pool   *tls.Config
}

func startTLSSink(t testing.TB, cfg httpflvsink.Config, pair testcert.Pair) *tlsSink {
	t.Helper()
	cfg.Cert, cfg.Key = pair.CertFile, pair.KeyFile
	s := startSink(t, cfg)
	addr := strings.TrimPrefix(s.base, "http://")
	s.base = "https://" + addr
	// Offering h2 as browsers do: the server must pick HTTP/1.1.
	conf := &tls.Config{RootCAs: pair.Pool, NextProtos: []string{"h2", "http/1.1"}, ServerName: "127.0.0.1"}
	// Not the default transport: each test's connections are its own.
	tr := &http.Transport{TLSClientConfig: conf, DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &tlsSink{sink: s, addr: addr, client: &http.Client{Transport: tr}, pool: conf}
}

// head is the status of a HEAD over HTTPS, 0 on failure.
func (s *tlsSink) head(path string) int {
	resp, err := s.client.Head(s.base + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitStream waits until the sink serves path.
func (s *tlsSink) waitStream(t testing.TB, path string) {
	t.Helper()
	testrun.Eventually(t, testrun.WaitLimit, "the stream served over HTTPS", func() bool { return s.head(path) == 200 })
}

// serial is the serial number of the certificate a new connection gets.
func (s *tlsSink) serial(t *testing.T) *big.Int {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", s.addr, s.pool)
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber
}

// plainToTLSPort sends a plain HTTP request to the HTTPS port: it must be
// answered 400 and closed.
func plainToTLSPort(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(testrun.WaitLimit))
	fmt.Fprintf(c, "GET /live/tls.flv HTTP/1.1\r\nHost: x\r\n\r\n")
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("plain request to the HTTPS port: %v", err)
	}
	if !bytes.HasPrefix(reply, []byte("HTTP/1.0 400")) {
		t.Fatalf("plain request to the HTTPS port answered %q, want a 400", reply)
	}
}

// A viewer over HTTPS, verifying the server with the test CA, gets every tag
// byte for byte as published, in every flush mode, by HTTP/1.1 (ALPN); a
// plain-HTTP request to the port meanwhile gets a 400 and harms nobody.
func TestHTTPSWholeStream(t *testing.T) {
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{}))
	pair := testcert.NewCA(t).Issue(t, t.TempDir(), "edge")
	for _, m := range flushModes {
		t.Run(m.name, func(t *testing.T) {
			s := startTLSSink(t, httpflvsink.Config{GOPCache: true, FlushInterval: m.interval, FlushBytes: m.bytes}, pair)
			st := s.h.StartStream("live/tls")
			s.waitStream(t, "/live/tls.flv")
			resp, err := s.client.Get(s.base + "/live/tls.flv")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 || resp.TLS == nil || resp.TLS.NegotiatedProtocol != "http/1.1" || resp.ProtoMajor != 1 {
				t.Fatalf("status %d, %s, TLS %v", resp.StatusCode, resp.Proto, resp.TLS != nil)
			}
			half := len(tags) / 2
			for _, tag := range tags[:half] {
				s.send(st, tag)
			}
			plainToTLSPort(t, s.addr)
			for _, tag := range tags[half:] {
				s.send(st, tag)
			}
			s.h.EndStream(st)
			got, err := flv.ReadAll(bufio.NewReader(resp.Body))
			if err != nil {
				t.Fatalf("reading the body: %v", err)
			}
			sameTags(t, got, tags)
			testrun.Eventually(t, testrun.WaitLimit, "viewer gone", func() bool { return s.viewers() == 0 })
		})
	}
}

// ffmpeg plays the stream over HTTPS, verifying the certificate with the
// test CA, and its packets are those a plain-HTTP viewer of the same
// stream gets, which are the clip's.
func TestHTTPSFFmpeg(t *testing.T) {
	clip := testmedia.Clip(t, testmedia.Options{})
	tags := testmedia.Tags(t, clip)
	want, stderr, err := testmedia.FrameMD5Err(testCtx(t, testrun.FFmpegLimit), clip, "-copyts")
	if err != nil {
		t.Fatalf("framemd5 of the clip: %v\n%s", err, stderr)
	}
	pair := testcert.NewCA(t).Issue(t, t.TempDir(), "edge")
	secure := startTLSSink(t, httpflvsink.Config{GOPCache: true, FlushInterval: 10 * time.Millisecond}, pair)
	plain := startSink(t, httpflvsink.Config{GOPCache: true, FlushInterval: 10 * time.Millisecond})
	sst, pst := secure.h.StartStream("live/tls"), plain.h.StartStream("live/tls")
	secure.waitStream(t, "/live/tls.flv")
	plain.sync(t)

	view := func(url string, extra ...string) <-chan testmedia.Viewing {
		ctx := testCtx(t, testrun.FFmpegLimit)
		done := make(chan testmedia.Viewing, 1)
		go func() {
			f, e, err := testmedia.FrameMD5Err(ctx, url, append([]string{"-rw_timeout", "20000000", "-copyts"}, extra...)...)
			done <- testmedia.Viewing{Frames: f, Stderr: e, Err: err}
		}()
		return done
	}
	overTLS := view(secure.base+"/live/tls.flv", "-tls_verify", "1", "-ca_file", pair.CAFile)
	overHTTP := view(plain.base + "/live/tls.flv")
	testrun.Eventually(t, testrun.WaitLimit, "both ffmpeg viewers to join", func() bool { return secure.viewers() == 1 && plain.viewers() == 1 })
	for _, tag := range tags {
		secure.send(sst, tag)
		plain.send(pst, tag)
	}
	secure.h.EndStream(sst)
	plain.h.EndStream(pst)
	a := testrun.Within(t, overTLS, testrun.FFmpegLimit, "ffmpeg over HTTPS")
	b := testrun.Within(t, overHTTP, testrun.FFmpegLimit, "ffmpeg over HTTP")
	if a.Err != nil || strings.TrimSpace(a.Stderr) != "" {
		t.Fatalf("ffmpeg over HTTPS: %v\n%s", a.Err, a.Stderr)
	}
	if b.Err != nil {
		t.Fatalf("ffmpeg over HTTP: %v\n%s", b.Err, b.Stderr)
	}
	if len(a.Frames) != len(want) || len(b.Frames) != len(want) {
		t.Fatalf("packets: %d over HTTPS, %d over HTTP, want the clip's %d", len(a.Frames), len(b.Frames), len(want))
	}
	for i := range want {
		if a.Frames[i] != b.Frames[i] || a.Frames[i].Hash != want[i].Hash {
			t.Fatalf("packet %d: over HTTPS %v, over HTTP %v, clip %v", i, a.Frames[i], b.Frames[i], want[i])
		}
	}
}

// A certificate renewed by writing new files over the old ones is served to
// the next client without a restart, while a viewer connected before keeps
// playing to the stream's end.
func TestHTTPSRenewedCertificate(t *testing.T) {
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{Seconds: 2}))
	ca, dir := testcert.NewCA(t), t.TempDir()
	first := ca.Issue(t, dir, "edge")
	s := startTLSSink(t, httpflvsink.Config{GOPCache: true, FlushInterval: 10 * time.Millisecond}, first)
	st := s.h.StartStream("live/renew")
	s.waitStream(t, "/live/renew.flv")
	if got := s.serial(t); got.Cmp(first.Serial) != 0 {
		t.Fatalf("served serial %v, want the first certificate's %v", got, first.Serial)
	}
	resp, err := s.client.Get(s.base + "/live/renew.flv")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	half := len(tags) / 2
	for _, tag := range tags[:half] {
		s.send(st, tag)
	}

	renewed := ca.Issue(t, dir, "edge")
	testrun.Eventually(t, testrun.WaitLimit, "the renewed certificate served", func() bool { return s.serial(t).Cmp(renewed.Serial) == 0 })
	for _, tag := range tags[half:] {
		s.send(st, tag)
	}
	s.h.EndStream(st)
	got, err := flv.ReadAll(bufio.NewReader(resp.Body))
	if err != nil {
		t.Fatalf("the viewer from before the renewal: %v", err)
	}
	sameTags(t, got, tags)
}

// A TLS viewer that stops reading is shed (slow_viewer), by write_timeout
// or by its queue overflowing (the socket is closed under the tls.Conn,
// from the stage's own goroutine), while another TLS viewer of the stream
// gets every tag.
func TestHTTPSStalledViewerShed(t *testing.T) {
	pair := testcert.NewCA(t).Issue(t, t.TempDir(), "edge")
	for _, c := range []struct {
		name    string
		queue   int
		timeout time.Duration
	}{
		{"write_timeout", 1024, time.Second},
		{"queue_full", 64, 10 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) { testHTTPSStalledViewerShed(t, pair, c.queue, c.timeout) })
	}
}

func testHTTPSStalledViewerShed(t *testing.T, pair testcert.Pair, queue int, timeout time.Duration) {
	s := startTLSSink(t, httpflvsink.Config{GOPCache: true, ViewerQueue: queue, WriteTimeout: timeout, FlushInterval: 10 * time.Millisecond}, pair)
	st := s.h.StartStream("live/stall")
	s.waitStream(t, "/live/stall.flv")

	raw, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.(*net.TCPConn).SetReadBuffer(4096)
	stalled := tls.Client(raw, s.pool.Clone())
	_ = stalled.SetDeadline(time.Now().Add(testrun.WaitLimit))
	// Handshakes, then never reads.
	if _, err := fmt.Fprintf(stalled, "GET /live/stall.flv HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	testrun.Eventually(t, testrun.WaitLimit, "stalled viewer", func() bool { return s.viewers() == 1 })

	s.shedBesideGoodViewer(t, st, s.client, 300)
}

// cert and key are checked when the pipeline file is: both or neither, a
// pair that loads, relative paths from the pipeline file's directory. A
// stage built with a broken pair fails with the reason.
func TestCertValidation(t *testing.T) {
	def, ok := core.Default.Lookup("httpflv-sink")
	if !ok || def.CheckIn == nil {
		t.Fatal("httpflv-sink is not registered with a directory check")
	}
	dir := t.TempDir()
	pair := testcert.NewCA(t).Issue(t, dir, "edge")
	other := testcert.NewCA(t).Issue(t, t.TempDir(), "other")
	if err := os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	raw := func(cert, key string) map[string]any {
		m := map[string]any{"listen": "127.0.0.1:0"}
		if cert != "" {
			m["cert"] = cert
		}
		if key != "" {
			m["key"] = key
		}
		return m
	}
	for _, c := range []struct {
		name      string
		cert, key string
		want      string // "" for valid
	}{
		{"none", "", "", ""},
		{"relative pair", "edge.crt", "edge.key", ""},
		{"absolute pair", pair.CertFile, pair.KeyFile, ""},
		{"cert alone", "edge.crt", "", "give both"},
		{"key alone", "", "edge.key", "give both"},
		{"missing file", "nope.crt", "edge.key", "nope.crt"},
		{"not PEM", "junk.pem", "edge.key", "cert and key"},
		{"another's key", "edge.crt", other.KeyFile, "cert and key"},
	} {
		errs := def.CheckIn(raw(c.cert, c.key), dir)
		switch {
		case c.want == "" && len(errs) > 0:
			t.Errorf("%s: %v, want valid", c.name, errs)
		case c.want != "" && (len(errs) == 0 || !strings.Contains(fmt.Sprint(errs), c.want)):
			t.Errorf("%s: %v, want an error about %q", c.name, errs, c.want)
		}
	}
	env := core.TestEnv("httpflv-sink")
	env.Dir = dir
	if _, err := def.Build(raw("junk.pem", "edge.key"), env); err == nil || !strings.Contains(err.Error(), "cert") {
		t.Errorf("building with a broken pair: %v, want an error about cert", err)
	}
	st, err := def.Build(raw("edge.crt", "edge.key"), env)
	if err != nil || st == nil {
		t.Errorf("building with a relative pair: %v", err)
	}
}

// BenchmarkFanoutTLS is BenchmarkFanout over HTTPS: each viewer is written
// by its own goroutine through TLS, where plain viewers share the
// flusher's batched writes; what that costs per delivery.
func BenchmarkFanoutTLS(b *testing.B) {
	pair := testcert.NewCA(b).Issue(b, b.TempDir(), "edge")
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("flush=10ms/viewers=%d", n), func(b *testing.B) { benchFanout(b, 10*time.Millisecond, n, &pair) })
	}
}
