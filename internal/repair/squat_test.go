package repair

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/repairwire"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// squat runs n peers from ip that handshake, never say HELLO, and handshake
// again as soon as the server closes them, until ctx ends; it returns a
// function that waits for them to stop.
func squat(t *testing.T, ctx context.Context, ip, addr string, n int) (wait func()) {
	t.Helper()
	tc, _ := ClientTLS("", "localhost")
	var wg sync.WaitGroup
	for range n {
		udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
		if err != nil {
			t.Fatal(err)
		}
		tr := &quic.Transport{Conn: udp}
		wg.Go(func() {
			defer udp.Close()
			defer tr.Close()
			for ctx.Err() == nil {
				dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				conn, err := tr.Dial(dctx, net.UDPAddrFromAddrPort(mustAddrPort(addr)), tc, &quic.Config{})
				cancel()
				if err != nil {
					continue
				}
				select {
				case <-conn.Context().Done():
				case <-ctx.Done():
					_ = conn.CloseWithError(0, "")
				}
			}
		})
	}
	return wg.Wait
}

// An edge with the right token gets in, and gets repairs and init tags,
// while three times as many peers without a token as there are slots for
// peers without HELLO keep handshaking and never say HELLO: from another
// address, and from the edge's own. Before eviction the edge got CodeBusy
// ("too many unauthenticated peers") for as long as the squat lasted.
func TestSquattersCannotLockOutEdge(t *testing.T) {
	const slots, squatters, rounds = 8, 24, 3
	const within = 10 * time.Second // per round: connect, init, one repair (generous: the squatters load the CPU)
	for _, ip := range []string{"127.0.0.2", "127.0.0.1"} {
		t.Run("squatters from "+ip, func(t *testing.T) {
			srv := startServer(t, ServerConfig{Token: "tok", MaxUnauthenticated: slots})
			st := core.NewStream("live/sq")
			st.SetInit(&core.InitTags{Metadata: []byte("meta"), Video: []byte("avc")})
			ring := srv.Stream(5, st)
			for seq := uint16(1); seq <= 50; seq++ {
				ring.Insert(seq, pkt(seq, 5, 200))
			}
			addr := srv.Addr().String()
			ctx, cancel := context.WithCancel(context.Background())
			wait := squat(t, ctx, ip, addr, squatters)
			defer func() { cancel(); wait() }()
			// The squat is on: the table is full and being churned.
			testrun.Eventually(t, testrun.WaitLimit, "squatters filling the table", func() bool {
				return srv.Stats().Get(EvEvicted) >= squatters
			})
			for round := range rounds {
				start := time.Now()
				r := newReplies()
				c, err := Dial(r.config(addr, "tok"))
				if err != nil {
					t.Fatal(err)
				}
				wctx, wcancel := context.WithTimeout(context.Background(), within)
				phase := "connect"
				err = c.WaitConnected(wctx)
				var tags *core.InitTags
				if err == nil {
					phase = fmt.Sprintf("init (connected after %v)", time.Since(start).Round(time.Millisecond))
					tags, err = c.Init(wctx, 0, "live/sq")
				}
				if err == nil {
					phase = fmt.Sprintf("repair (init after %v)", time.Since(start).Round(time.Millisecond))
					err = c.Nack(5, []uint16{uint16(10 + round)})
				}
				for err == nil && wctx.Err() == nil && !r.has(uint16(10+round)) {
					select {
					case <-r.changed:
					case <-wctx.Done():
					}
				}
				if err == nil && !r.has(uint16(10+round)) {
					err = wctx.Err()
				}
				last := c.LastError()
				wcancel()
				_ = c.Close()
				if err != nil || tags == nil || string(tags.Metadata) != "meta" {
					t.Fatalf("round %d: edge with the token not served within %v, at %s: %v (last error %v); stats %+v", round, within, phase, err, last, srv.Stats())
				}
				t.Logf("round %d: connected, init and repair in %v", round, time.Since(start).Round(time.Millisecond))
			}
			t.Logf("evicted %d peers without HELLO", srv.Stats().Get(EvEvicted))
		})
	}
}

func (r *replies) has(seq uint16) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.repaired[seq] != nil
}

func mustAddrPort(s string) (ap netip.AddrPort) {
	ua, err := net.ResolveUDPAddr("udp", s)
	if err != nil {
		panic(err)
	}
	return ua.AddrPort()
}

// A first frame that is not HELLO is logged as what it was, not as
// "bad hello (NACK): <nil>".
func TestHelloRefusalSaysWhatCame(t *testing.T) {
	var logs testrun.LogBuffer
	srv := startServer(t, ServerConfig{Log: slog.New(slog.NewTextHandler(&logs, nil))})
	conn := rawConn(t, srv.Addr().String())
	st, err := conn.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	_, _ = st.Write(append(repairwire.AppendFrameHeader(nil, repairwire.FrameNACK, 8), repairwire.AppendNACK(nil, []repairwire.NACKEntry{{SSRC: 1, PID: 5}})...))
	testrun.Eventually(t, testrun.WaitLimit, "the refusal logged", func() bool { return strings.Contains(logs.String(), "repair peer refused") })
	line := logs.String()
	if strings.Contains(line, "<nil>") || !strings.Contains(line, fmt.Sprintf("first frame is %s, not HELLO", repairwire.FrameNACK)) {
		t.Fatalf("log: %s", line)
	}
}

// Connection attempts beyond MaxUnauthenticated a second, or a table of
// peers without HELLO half full, make new peers prove their address (Retry)
// before the server keeps any state for them.
func TestRetryUnderLoad(t *testing.T) {
	s, err := NewServer(ServerConfig{MaxUnauthenticated: 4})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if s.verifySource(nil) {
			t.Fatalf("attempt %d asked to retry", i)
		}
	}
	if !s.verifySource(nil) {
		t.Fatal("5th attempt in a second not asked to retry")
	}
	s.attemptsAt = s.attemptsAt.Add(-time.Second) // a second later
	if s.verifySource(nil) {
		t.Fatal("asked to retry in a quiet second")
	}
	s.busy.Store(true)
	if !s.verifySource(nil) {
		t.Fatal("half-full table does not ask to retry")
	}
}

// Peers refused by the dozen (a wrong token each time) cost one log line per
// interval, not one each; every refusal is still counted.
func TestRefusedPeersLogBounded(t *testing.T) {
	const attempts = 40
	var logs testrun.LogBuffer
	srv := startServer(t, ServerConfig{Token: "right", Log: slog.New(slog.NewTextHandler(&logs, nil))})
	for i := range attempts {
		r := newReplies()
		c := dial(t, r.config(srv.Addr().String(), fmt.Sprintf("guess-%d", i)))
		testrun.Eventually(t, testrun.WaitLimit, "the refusal", func() bool { return errors.Is(c.LastError(), ErrUnauthorized) })
		_ = c.Close()
	}
	testrun.Eventually(t, testrun.WaitLimit, "every refusal counted", func() bool { return srv.Stats().Get(EvAuthFailed) >= attempts })
	if n := strings.Count(logs.String(), "repair peer refused"); n != 1 {
		t.Fatalf("%d refused lines for %d refusals in one interval, want 1:\n%s", n, attempts, logs.String())
	}
}
