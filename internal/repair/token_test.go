package repair

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/repairwire"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// serverAt starts a server on addr that stop ends (idempotent).
func serverAt(t *testing.T, addr, token string) (*Server, func()) {
	t.Helper()
	s, err := NewServer(ServerConfig{Addr: addr, Token: token, CachePackets: 100})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Serve(ctx); close(done) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return s, stop
}

// TestSetTokenNextHello: a new token leaves the session up as it is, and
// the next HELLO (after the cloud restarts, here with only the new token)
// carries it.
func TestSetTokenNextHello(t *testing.T) {
	srv1, stop1 := serverAt(t, "127.0.0.1:0", "old")
	addr := srv1.Addr().String()
	srv1.Stream(1, core.NewStream("live/a")).Insert(5, pkt(5, 1, 100))
	r := newReplies()
	cfg := r.config(addr, "old")
	var connects atomic.Int32
	cfg.OnConnect = func() { connects.Add(1) }
	c := dial(t, cfg)
	connected(t, c)
	if err := c.SetToken("new"); err != nil {
		t.Fatal(err)
	}
	// The session up goes on serving: a NACK is still answered on it.
	if err := c.Nack(1, []uint16{5}); err != nil {
		t.Fatal(err)
	}
	r.wait(t, "the repair", func() bool { return r.repaired[5] != nil })
	if n := connects.Load(); n != 1 || !c.Connected() {
		t.Fatalf("%d connections, connected %v: the token change cut the session", n, c.Connected())
	}
	stop1()
	testrun.Eventually(t, 5*time.Second, "the client noticed the cloud stopping", func() bool { return !c.Connected() })
	serverAt(t, addr, "new")
	connected(t, c)
	if n := connects.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
	if err := c.SetToken(strings.Repeat("x", repairwire.MaxTokenLen+1)); err == nil {
		t.Fatal("a token over the limit was accepted")
	}
}

// TestSetTokenEndsBackoff: a client refused for its token waits out a long
// back-off; a new token makes it try at once.
func TestSetTokenEndsBackoff(t *testing.T) {
	srv := startServer(t, ServerConfig{Token: "rotated"})
	r := newReplies()
	cfg := r.config(srv.Addr().String(), "stale")
	cfg.MinBackoff, cfg.MaxBackoff = time.Minute, time.Minute
	c := dial(t, cfg)
	testrun.Eventually(t, 5*time.Second, "the token refused", func() bool { return errors.Is(c.LastError(), ErrUnauthorized) })
	if err := c.SetToken("rotated"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	connected(t, c) // 5 s at most, far below the minute's back-off
	t.Logf("connected %v after the new token", time.Since(start))
}
