package repair

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/repairwire"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// helloRaw says HELLO with token on a raw connection and returns the error
// the server closed the connection with, or nil if it answered HELLO_OK.
func helloRaw(t *testing.T, conn *quic.Conn, token string) error {
	t.Helper()
	st, err := conn.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	_, _ = st.Write(repairwire.AppendHello(nil, repairwire.Hello{Version: repairwire.Version, Token: token}))
	_ = st.SetReadDeadline(time.Now().Add(5 * time.Second))
	typ, _, err := repairwire.NewFrameReader(st, 64).Next()
	if err == nil && typ != repairwire.FrameHelloOK {
		t.Fatalf("hello answered with %s", typ)
	}
	return err
}

// Past MaxPeers authenticated connections, one more is closed with
// CodeTooManyPeers and counted; a peer without the token still gets only
// "unauthorized"; a leaving peer frees its place.
func TestMaxPeers(t *testing.T) {
	const limit = 3
	srv := startServer(t, ServerConfig{Token: "tok", MaxPeers: limit})
	addr := srv.Addr().String()
	conns := make([]*quic.Conn, limit)
	for i := range conns {
		conns[i] = rawConn(t, addr)
		if err := helloRaw(t, conns[i], "tok"); err != nil {
			t.Fatalf("peer %d refused: %v", i, err)
		}
	}
	var ae *quic.ApplicationError
	over := rawConn(t, addr)
	if err := helloRaw(t, over, "tok"); !errors.As(err, &ae) || ae.ErrorCode != repairwire.CodeTooManyPeers {
		t.Fatalf("peer over max_peers: %v, want code %#x", err, repairwire.CodeTooManyPeers)
	}
	if err := helloRaw(t, rawConn(t, addr), "wrong"); !errors.As(err, &ae) || ae.ErrorCode != repairwire.CodeUnauthorized {
		t.Fatalf("wrong token while full: %v", err)
	}
	if n := srv.Stats().Get(EvRefusedPeer); n != 1 {
		t.Fatalf("refused_peers = %d, want 1", n)
	}
	_ = conns[0].CloseWithError(repairwire.CodeNormal, "bye")
	// The client library gets in once there is room again (it retries).
	r := newReplies()
	c := dial(t, r.config(addr, "tok"))
	connected(t, c)
	// The peers that left (the first, the one over the cap, the wrong
	// token) are forgotten just after their goroutines count them out.
	testrun.Eventually(t, testrun.WaitLimit, fmt.Sprintf("%d peers", limit), func() bool { return srv.Stats().Peers == limit })
}

// A request stream with no request for StreamIdleTimeout is closed and
// counted; the control stream is not, and the client's next NACK opens a
// new stream and is answered.
func TestIdleRequestStreamClosed(t *testing.T) {
	const idle = 200 * time.Millisecond
	srv := startServer(t, ServerConfig{StreamIdleTimeout: idle})
	ring := srv.Stream(7, core.NewStream("live/idle"))
	for seq := uint16(1); seq <= 10; seq++ {
		ring.Insert(seq, pkt(seq, 7, 300))
	}
	r := newReplies()
	c := dial(t, r.config(srv.Addr().String(), ""))
	connected(t, c)
	if err := c.Nack(7, []uint16{3}); err != nil {
		t.Fatal(err)
	}
	r.wait(t, "first repair", func() bool { return r.repaired[3] != nil })
	deadline := time.Now().Add(5 * time.Second)
	for srv.Stats().Get(EvIdleStream) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("idle request stream not closed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(3 * idle) // the control stream has been idle for longer too
	if !c.Connected() || srv.Stats().Peers != 1 {
		t.Fatalf("idle control stream ended the connection")
	}
	// The client may need one failed attempt to notice the closed stream.
	deadline = time.Now().Add(5 * time.Second)
	for {
		_ = c.Nack(7, []uint16{5})
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		for ctx.Err() == nil {
			r.mu.Lock()
			ok := r.repaired[5] != nil
			r.mu.Unlock()
			if ok {
				cancel()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		if time.Now().After(deadline) {
			t.Fatal("no repair after the idle stream was closed")
		}
	}
}

// A stream that opens, sends half a frame header and then stalls is closed
// by the same deadline, not held forever.
func TestStalledPartialFrameClosed(t *testing.T) {
	srv := startServer(t, ServerConfig{StreamIdleTimeout: 200 * time.Millisecond})
	conn := rawConn(t, srv.Addr().String())
	if err := helloRaw(t, conn, ""); err != nil {
		t.Fatal(err)
	}
	st, err := conn.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	_, _ = st.Write([]byte{byte(repairwire.FrameNACK), 0})
	_ = st.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	n, err := st.Read(buf)
	var ne interface{ Timeout() bool }
	if n != 0 || err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("stalled stream: read %d bytes, err %v; want it ended by the server", n, err)
	}
	if srv.Stats().Get(EvIdleStream) != 1 {
		t.Fatalf("idle_stream = %d", srv.Stats().Get(EvIdleStream))
	}
}

// Request streams that wait between requests hold no reply buffer: 300 of
// them, each answered once, cost far less than 300 × 32 KB.
func TestIdleStreamsHoldNoReplyBuffer(t *testing.T) {
	srv := startServer(t, ServerConfig{})
	srv.Stream(9, core.NewStream("live/buf")).Insert(1, pkt(1, 9, 1000))
	conn := rawConn(t, srv.Addr().String())
	if err := helloRaw(t, conn, ""); err != nil {
		t.Fatal(err)
	}
	req := append(repairwire.AppendFrameHeader(nil, repairwire.FrameNACK, repairwire.NACKEntrySize), repairwire.AppendNACK(nil, []repairwire.NACKEntry{{SSRC: 9, PID: 1}})...)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	const streams = 300
	before := heap()
	for range streams {
		st, err := conn.OpenStreamSync(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = st.Write(req)
		_ = st.SetReadDeadline(time.Now().Add(5 * time.Second))
		if typ, _, err := repairwire.NewFrameReader(st, repairwire.MaxReplyFrame).Next(); err != nil || typ != repairwire.FrameRepair {
			t.Fatalf("reply %s, %v", typ, err)
		}
	}
	grown := int64(heap()) - int64(before)
	t.Logf("%d idle request streams: heap grew %d KB", streams, grown>>10)
	if grown > streams*16<<10 {
		t.Fatalf("%d idle request streams hold %d KB: reply buffers kept between requests?", streams, grown>>10)
	}
}

// With a cache bounded by time, packets older than CacheDuration are
// answered GONE and newer ones repaired, and the stream's init tags — kept
// on the stream, not in the ring — are still served.
func TestCacheDurationKeepsInit(t *testing.T) {
	srv := startServer(t, ServerConfig{CacheDuration: time.Second})
	st := core.NewStream("live/dur")
	st.SetInit(&core.InitTags{Metadata: []byte("meta"), Video: []byte("avc")})
	ring := srv.Stream(3, st)
	start := time.Unix(1000, 0)
	for seq := range uint16(300) { // 100 a second for 3 s
		ring.InsertAt(seq, pkt(seq, 3, 500), start.Add(time.Duration(seq)*10*time.Millisecond))
	}
	r := newReplies()
	c := dial(t, r.config(srv.Addr().String(), ""))
	connected(t, c)
	if err := c.Nack(3, []uint16{10, 150, 250, 299}); err != nil {
		t.Fatal(err)
	}
	r.wait(t, "answers", func() bool { return len(r.repaired)+len(r.gone) == 4 })
	if r.repaired[250] == nil || r.repaired[299] == nil || !slices.Equal(r.gone, []uint16{10, 150}) {
		t.Fatalf("repaired %d packets, gone %v; want 250 and 299 repaired, 10 and 150 gone", len(r.repaired), r.gone)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testrun.WaitLimit)
	defer cancel()
	tags, err := c.Init(ctx, 0, "live/dur")
	if err != nil || tags == nil || string(tags.Metadata) != "meta" || string(tags.Video) != "avc" {
		t.Fatalf("init after the cache moved on: %+v %v", tags, err)
	}
}
