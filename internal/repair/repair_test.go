package repair

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/repairwire"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// replies collects what a client's callbacks receive.
type replies struct {
	mu       sync.Mutex
	repaired map[uint16][]byte
	gone     []uint16
	refused  []uint16
	changed  chan struct{}
}

func newReplies() *replies {
	return &replies{repaired: map[uint16][]byte{}, changed: make(chan struct{}, 1)}
}

func (r *replies) poke() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *replies) config(addr, token string) ClientConfig {
	return ClientConfig{
		Addr: addr, Token: token,
		OnRepair: func(ssrc uint32, seq uint16, p []byte) {
			r.mu.Lock()
			r.repaired[seq] = append([]byte(nil), p...)
			r.mu.Unlock()
			r.poke()
		},
		OnGone: func(ssrc uint32, seqs []uint16) {
			r.mu.Lock()
			r.gone = append(r.gone, seqs...)
			r.mu.Unlock()
			r.poke()
		},
		OnRefused: func(ssrc uint32, seqs []uint16) {
			r.mu.Lock()
			r.refused = append(r.refused, seqs...)
			r.mu.Unlock()
			r.poke()
		},
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	}
}

// wait waits until cond holds (checked under the lock) or fails after 5 s.
func (r *replies) wait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func startServer(t testing.TB, cfg ServerConfig) *Server {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return s
}

func dial(t testing.TB, cfg ClientConfig) *Client {
	t.Helper()
	c, err := Dial(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func connected(t testing.TB, c *Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatalf("not connected: %v (last error %v)", err, c.LastError())
	}
}

func TestRepairSameBytes(t *testing.T) {
	srv := startServer(t, ServerConfig{Token: "tok", CachePackets: 100})
	stream := core.NewStream("live/a")
	ring := srv.Stream(0xabc, stream)
	for i := 0; i < 300; i++ { // across the wrap, and 200 evicted
		seq := uint16(65400) + uint16(i)
		ring.Insert(seq, pkt(seq, 0xabc, 1000+i%100))
	}
	r := newReplies()
	c := dial(t, r.config(srv.Addr().String(), "tok"))
	connected(t, c)

	base := uint16(65400)
	newest := base + 299
	var want []uint16
	for back := 0; back < 100; back += 3 {
		want = append(want, newest-uint16(back))
	}
	goneWant := []uint16{newest - 150, newest - 120, newest + 5} // evicted, evicted, never sent
	if err := c.Nack(0xabc, append(slices.Clone(want), goneWant...)); err != nil {
		t.Fatal(err)
	}
	if err := c.Nack(0x999, []uint16{1, 2, 3}); err != nil { // unknown SSRC
		t.Fatal(err)
	}
	r.wait(t, "repairs and gone", func() bool { return len(r.repaired) == len(want) && len(r.gone) == len(goneWant)+3 })
	for _, seq := range want {
		back := int(newest - seq)
		if !bytes.Equal(r.repaired[seq], pkt(seq, 0xabc, 1000+(299-back)%100)) {
			t.Fatalf("seq %d: repaired bytes differ", seq)
		}
	}
	r.mu.Lock()
	gone := slices.Clone(r.gone)
	r.mu.Unlock()
	slices.Sort(gone)
	wantGone := append(slices.Clone(goneWant), 1, 2, 3)
	slices.Sort(wantGone)
	if !slices.Equal(gone, wantGone) {
		t.Fatalf("gone = %v, want %v", gone, wantGone)
	}
	st := srv.Stats()
	if st.Get(EvRepaired) != uint64(len(want)) || st.Get(EvGone) != uint64(len(wantGone)) || st.Get(EvRequest) != 2 {
		t.Fatalf("stats %+v", st)
	}
	if c.RTT() <= 0 {
		t.Fatalf("no RTT measured")
	}
}

func TestManyInFlight(t *testing.T) {
	srv := startServer(t, ServerConfig{CachePackets: 5000})
	ring := srv.Stream(7, core.NewStream("live/b"))
	for i := 0; i < 5000; i++ {
		ring.Insert(uint16(i), pkt(uint16(i), 7, 1180))
	}
	r := newReplies()
	c := dial(t, r.config(srv.Addr().String(), ""))
	connected(t, c)
	// 500 NACKs sent back to back, no waiting between them.
	for i := 0; i < 5000; i += 10 {
		if err := c.Nack(7, []uint16{uint16(i)}); err != nil {
			t.Fatal(err)
		}
	}
	r.wait(t, "500 repairs", func() bool { return len(r.repaired) == 500 })
}

func TestStreamsAndInit(t *testing.T) {
	srv := startServer(t, ServerConfig{})
	a := core.NewStream("live/a")
	a.SetInit(&core.InitTags{Metadata: []byte("meta"), Video: []byte("avc"), Audio: []byte("aac")})
	srv.Stream(1, a)
	srv.Stream(2, core.NewStream("live/b"))
	r := newReplies()
	c := dial(t, r.config(srv.Addr().String(), ""))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list, err := c.Streams(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(list, func(x, y repairwire.StreamInfo) int { return int(x.SSRC) - int(y.SSRC) })
	if !slices.Equal(list, []repairwire.StreamInfo{{SSRC: 1, Name: "live/a"}, {SSRC: 2, Name: "live/b"}}) {
		t.Fatalf("streams %v", list)
	}
	for _, q := range []struct {
		ssrc uint32
		name string
	}{{1, ""}, {0, "live/a"}} {
		tags, err := c.Init(ctx, q.ssrc, q.name)
		if err != nil || tags == nil || string(tags.Metadata) != "meta" || string(tags.Video) != "avc" || string(tags.Audio) != "aac" {
			t.Fatalf("init %v: %+v %v", q, tags, err)
		}
	}
	if tags, err := c.Init(ctx, 0, "live/b"); err != nil || tags != nil {
		t.Fatalf("init of stream without tags: %+v %v", tags, err)
	}
	if _, err := c.Init(ctx, 0, "live/nope"); err == nil {
		t.Fatal("unknown stream: no error")
	}
	// A newer stream of the same name wins; an ended one loses.
	a2 := core.NewStream("live/a")
	a2.SetInit(&core.InitTags{Metadata: []byte("meta2")})
	srv.Stream(3, a2)
	srv.EndStream(1)
	if tags, err := c.Init(ctx, 0, "live/a"); err != nil || string(tags.Metadata) != "meta2" {
		t.Fatalf("newest stream: %+v %v", tags, err)
	}
}

func TestWrongTokenGetsNothing(t *testing.T) {
	srv := startServer(t, ServerConfig{Token: "right"})
	srv.Stream(1, core.NewStream("live/a")).Insert(5, pkt(5, 1, 100))
	for _, tok := range []string{"", "wrong", "righ", "right!"} {
		r := newReplies()
		c := dial(t, r.config(srv.Addr().String(), tok))
		deadline := time.Now().Add(3 * time.Second)
		for !errors.Is(c.LastError(), ErrUnauthorized) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if !errors.Is(c.LastError(), ErrUnauthorized) {
			t.Fatalf("token %q: last error %v", tok, c.LastError())
		}
		if c.Connected() || !errors.Is(c.Nack(1, []uint16{5}), ErrNotConnected) {
			t.Fatalf("token %q: connected", tok)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		if _, err := c.Streams(ctx); err == nil {
			t.Fatalf("token %q: got the stream list", tok)
		}
		cancel()
		_ = c.Close()
	}
	if srv.Stats().Get(EvAuthFailed) < 4 {
		t.Fatalf("auth failures %d", srv.Stats().Get(EvAuthFailed))
	}
}

// rawConn dials the server without the Client, to misbehave.
func rawConn(t *testing.T, addr string) *quic.Conn {
	t.Helper()
	tc, _ := ClientTLS("", "localhost")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, addr, tc, &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.CloseWithError(0, "") })
	return conn
}

func TestNoHelloNoAnswer(t *testing.T) {
	srv := startServer(t, ServerConfig{Token: "right"})
	srv.Stream(1, core.NewStream("live/a")).Insert(5, pkt(5, 1, 100))
	conn := rawConn(t, srv.Addr().String())
	st, err := conn.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	// A NACK instead of a HELLO: the connection is closed, nothing comes back.
	_, _ = st.Write(append(repairwire.AppendFrameHeader(nil, repairwire.FrameNACK, 8), repairwire.AppendNACK(nil, []repairwire.NACKEntry{{SSRC: 1, PID: 5}})...))
	buf := make([]byte, 100)
	_ = st.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, err := st.Read(buf)
	var ae *quic.ApplicationError
	if n != 0 || !errors.As(err, &ae) || ae.ErrorCode != repairwire.CodeProtocol {
		t.Fatalf("read %d bytes, err %v", n, err)
	}
	// Wrong token: closed with CodeUnauthorized.
	conn2 := rawConn(t, srv.Addr().String())
	st2, _ := conn2.OpenStream()
	_, _ = st2.Write(repairwire.AppendHello(nil, repairwire.Hello{Version: repairwire.Version, Token: "nope"}))
	_ = st2.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, err = st2.Read(buf)
	if n != 0 || !errors.As(err, &ae) || ae.ErrorCode != repairwire.CodeUnauthorized {
		t.Fatalf("wrong token: read %d bytes, err %v", n, err)
	}
}

func TestBogusRequests(t *testing.T) {
	srv := startServer(t, ServerConfig{})
	srv.Stream(1, core.NewStream("live/a")).Insert(5, pkt(5, 1, 100))
	conn := rawConn(t, srv.Addr().String())
	ctrl, _ := conn.OpenStream()
	_, _ = ctrl.Write(repairwire.AppendHello(nil, repairwire.Hello{Version: repairwire.Version}))
	if _, _, err := repairwire.NewFrameReader(ctrl, 64).Next(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"unknown type", repairwire.AppendFrame(nil, 0x7e, []byte{1, 2, 3})},
		{"ragged nack", repairwire.AppendFrame(nil, repairwire.FrameNACK, []byte{1, 2, 3})},
		{"empty nack", repairwire.AppendFrame(nil, repairwire.FrameNACK, nil)},
		{"oversized", repairwire.AppendFrameHeader(nil, repairwire.FrameNACK, 1<<23)},
		{"bad init req", repairwire.AppendFrame(nil, repairwire.FrameInitReq, []byte{0, 0, 0, 1, 200})},
		{"random", func() []byte { b := make([]byte, 3000); _, _ = rand.Read(b); return b }()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := conn.OpenStream()
			if err != nil {
				t.Fatal(err)
			}
			_, _ = st.Write(tc.frame)
			_ = st.SetReadDeadline(time.Now().Add(3 * time.Second))
			n, err := st.Read(make([]byte, 64))
			var se *quic.StreamError
			if n != 0 || !errors.As(err, &se) {
				t.Fatalf("read %d, err %v (want stream reset)", n, err)
			}
		})
	}
	// The connection survived: a proper request still works.
	st, _ := conn.OpenStream()
	_, _ = st.Write(append(repairwire.AppendFrameHeader(nil, repairwire.FrameNACK, 8), repairwire.AppendNACK(nil, []repairwire.NACKEntry{{SSRC: 1, PID: 5, BLP: 0xffff}})...))
	fr := repairwire.NewFrameReader(st, repairwire.MaxReplyFrame)
	_ = st.SetReadDeadline(time.Now().Add(3 * time.Second))
	typ, p, err := fr.Next()
	if err != nil || typ != repairwire.FrameRepair || !bytes.Equal(p, pkt(5, 1, 100)) {
		t.Fatalf("repair after bogus: %s %v", typ, err)
	}
	typ, p, err = fr.Next()
	if err != nil || typ != repairwire.FrameGone {
		t.Fatalf("gone after bogus: %s %v", typ, err)
	}
	if e, _ := repairwire.ParseNACK(p, nil); len(e) != 1 || e[0] != (repairwire.NACKEntry{SSRC: 1, PID: 6, BLP: 0x7fff}) {
		t.Fatalf("gone entries %+v", e)
	}
	if srv.Stats().Get(EvBadRequest) < 5 {
		t.Fatalf("bad requests %d", srv.Stats().Get(EvBadRequest))
	}
}

func TestGarbageDatagrams(t *testing.T) {
	srv := startServer(t, ServerConfig{})
	srv.Stream(1, core.NewStream("live/a")).Insert(5, pkt(5, 1, 100))
	u, err := net.Dial("udp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	b := make([]byte, 1400)
	for i := 0; i < 2000; i++ {
		_, _ = rand.Read(b)
		if i%2 == 0 {
			b[0] |= 0xc0 // looks like a QUIC long header
		}
		_, _ = u.Write(b[:1+i%1400])
	}
	r := newReplies()
	c := dial(t, r.config(srv.Addr().String(), ""))
	connected(t, c)
	if err := c.Nack(1, []uint16{5}); err != nil {
		t.Fatal(err)
	}
	r.wait(t, "repair after garbage", func() bool { return len(r.repaired) == 1 })
	// Garbage is counted: datagrams that are not QUIC at all, and those
	// QUIC drops as unparsable (some short-header ones are answered with a
	// stateless reset instead, uncounted).
	testrun.Eventually(t, testrun.WaitLimit, "junk counted", func() bool { return srv.Stats().Get(EvJunk) >= 1000 })
	t.Logf("junk counted: %d of 2000", srv.Stats().Get(EvJunk))
}

func TestRateLimitRefuses(t *testing.T) {
	srv := startServer(t, ServerConfig{MaxRate: 10_000}) // burst = 64 KiB
	ring := srv.Stream(1, core.NewStream("live/a"))
	for i := 0; i < 200; i++ {
		ring.Insert(uint16(i), pkt(uint16(i), 1, 1188))
	}
	r := newReplies()
	c := dial(t, r.config(srv.Addr().String(), ""))
	connected(t, c)
	seqs := make([]uint16, 200)
	for i := range seqs {
		seqs[i] = uint16(i)
	}
	if err := c.Nack(1, seqs); err != nil {
		t.Fatal(err)
	}
	r.wait(t, "all answered", func() bool { return len(r.repaired)+len(r.refused) == 200 })
	r.mu.Lock()
	got, refused := len(r.repaired), len(r.refused)
	r.mu.Unlock()
	// 64 KiB of burst holds 54 packets of 1200 B (+4 B framing).
	if got < 50 || got > 60 || refused != 200-got {
		t.Fatalf("repaired %d, refused %d", got, refused)
	}
	if srv.Stats().Get(EvRefusedRate) != uint64(refused) {
		t.Fatalf("refused_rate %d", srv.Stats().Get(EvRefusedRate))
	}
}

func TestReconnectAfterRestart(t *testing.T) {
	srv, err := NewServer(ServerConfig{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	r := newReplies()
	c := dial(t, r.config(addr, ""))
	connected(t, c)
	cancel()
	<-done
	deadline := time.Now().Add(3 * time.Second)
	for c.Connected() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if c.Connected() {
		t.Fatal("client did not notice the server going away")
	}
	srv2 := startServer(t, ServerConfig{Addr: addr})
	srv2.Stream(1, core.NewStream("live/a")).Insert(9, pkt(9, 1, 10))
	connected(t, c)
	if err := c.Nack(1, []uint16{9}); err != nil {
		t.Fatal(err)
	}
	r.wait(t, "repair from restarted server", func() bool { return len(r.repaired) == 1 })
}

// BenchmarkRepairRoundTrip: one NACK of batch packets, wait for all of them,
// over loopback QUIC.
func BenchmarkRepairRoundTrip(b *testing.B) {
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			srv := startServer(b, ServerConfig{CachePackets: 1024})
			ring := srv.Stream(1, core.NewStream("live/a"))
			for i := 0; i < 1024; i++ {
				ring.Insert(uint16(i), pkt(uint16(i), 1, 1180))
			}
			got := make(chan struct{}, 1024)
			c := dial(b, ClientConfig{Addr: srv.Addr().String(), OnRepair: func(uint32, uint16, []byte) { got <- struct{}{} }})
			connected(b, c)
			seqs := make([]uint16, batch)
			b.SetBytes(int64(batch * 1192))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				for j := range seqs {
					seqs[j] = uint16((i + j) % 1024)
				}
				i += batch
				if err := c.Nack(1, seqs); err != nil {
					b.Fatal(err)
				}
				for range batch {
					<-got
				}
			}
		})
	}
}

// Past MaxUnauthenticated peers without HELLO, a newcomer still gets its
// slot: the oldest silent peer is closed with CodeBusy and counted.
func TestSilentPeersCapped(t *testing.T) {
	const limit = 8
	srv := startServer(t, ServerConfig{HelloTimeout: 10 * time.Second, MaxUnauthenticated: limit, MaxUnauthenticatedPerAddr: limit})
	addr := srv.Addr().String()
	first := rawConn(t, addr) // handshakes, never says HELLO
	testrun.Eventually(t, testrun.WaitLimit, "the first peer accepted", func() bool { return srv.Stats().Peers == 1 })
	for i := 1; i < limit; i++ {
		rawConn(t, addr)
	}
	testrun.Eventually(t, testrun.WaitLimit, "the table full", func() bool { return srv.Stats().Peers == limit })
	newest := rawConn(t, addr)
	select {
	case <-first.Context().Done():
		var ae *quic.ApplicationError
		if err := context.Cause(first.Context()); !errors.As(err, &ae) || ae.ErrorCode != repairwire.CodeBusy {
			t.Fatalf("oldest closed with %v", err)
		}
	case <-time.After(testrun.WaitLimit):
		t.Fatal("oldest silent peer not evicted")
	}
	if err := helloRaw(t, newest, ""); err != nil {
		t.Fatalf("newcomer refused: %v", err)
	}
	if n := srv.Stats().Get(EvEvicted); n != 1 {
		t.Fatalf("evicted = %d, want 1", n)
	}
}
