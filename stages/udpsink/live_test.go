package udpsink

import (
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/announce"
	"github.com/mediapipe/mediapipe/core/media/rtpheader"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// receiver collects what one destination gets: the RTP sequence numbers in
// arrival order, and the stream names its SDES items carried.
type receiver struct {
	conn *net.UDPConn
	done chan struct{}

	mu    sync.Mutex
	seqs  []uint16
	names []string
}

func newReceiver(t *testing.T, conn *net.UDPConn) *receiver {
	t.Helper()
	_ = conn.SetReadBuffer(8 << 20)
	r := &receiver{conn: conn, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		buf := make([]byte, 70000)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return // closed by the test
			}
			b := buf[:n]
			r.mu.Lock()
			switch announce.Classify(b) {
			case announce.RTP:
				r.seqs = append(r.seqs, rtpheader.Seq(b))
			case announce.RTCP:
				var rep announce.Report
				if announce.Parse(b, &rep) == nil {
					for _, nm := range rep.Names {
						r.names = append(r.names, nm.Name)
					}
				}
			}
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-r.done
	})
	return r
}

func (r *receiver) got() ([]uint16, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seqs), slices.Clone(r.names)
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seqs)
}

// contiguous checks that seqs are exactly first, first+1, … (no gap, no
// duplicate, in order) and returns first and the count.
func contiguous(t *testing.T, who string, seqs []uint16) (first, n int) {
	t.Helper()
	if len(seqs) == 0 {
		return -1, 0
	}
	for i, q := range seqs {
		if q != seqs[0]+uint16(i) {
			t.Fatalf("%s: packet %d has seq %d, want %d: a gap or a duplicate", who, i, q, seqs[0]+uint16(i))
		}
	}
	return int(seqs[0]), len(seqs)
}

// TestLiveDestinations changes destinations while a stream flows, as a
// reload does through the registry's Definition.Reconfigure: the kept
// destination misses no packet (every sequence number, in order, across
// the change), the removed one gets a gapless prefix and nothing sent after
// the change, the added ones (IPv4 and IPv6) a gapless suffix holding
// everything sent after it, and are told the stream's name at once.
func TestLiveDestinations(t *testing.T) {
	def, ok := core.Default.Lookup("udp-sink")
	if !ok {
		t.Fatal("udp-sink is not registered")
	}
	if p := def.Spec.Param("destinations"); p == nil || !p.Live {
		t.Fatal("destinations is not marked live")
	}
	kept, removed, added := listen(t), listen(t), listen(t)
	rxKept, rxRemoved, rxAdded := newReceiver(t, kept), newReceiver(t, removed), newReceiver(t, added)
	var rxV6 *receiver
	var v6 string
	if c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err == nil {
		rxV6, v6 = newReceiver(t, c), c.LocalAddr().String()
	} else {
		t.Logf("no IPv6 loopback (%v): adding an IPv4 destination only", err)
	}

	env := core.TestEnv("udp-sink")
	env.Clock = stagetest.NewFakeClock(time.Unix(1_700_000_000, 0)) // no periodic SR: only the change announces
	raw := map[string]any{"destinations": []any{kept.LocalAddr().String(), removed.LocalAddr().String()}, "batch": int64(16)}
	st, err := def.Build(raw, env)
	if err != nil {
		t.Fatal(err)
	}
	h := stagetest.Start(t, st, env, false)
	s := h.StartStream("live/reload")

	const total, chunk = 3000, 100
	var sent atomic.Int64 // packets handed to the stage so far
	sendChunk := func() {
		for range chunk {
			i := int(sent.Load())
			h.SendData(s, 0, uint32(i), rtpPacket(t, 0x5eed, uint16(i), uint32(i), 1000))
			sent.Add(1)
		}
		// Flow control, not timing: the kept receiver has every packet
		// sent so far before more go, so no socket buffer overflows.
		n := int(sent.Load())
		testrun.Eventually(t, 5*time.Second, "the kept destination caught up", func() bool { return rxKept.count() >= n })
	}
	for range 10 {
		sendChunk()
	}

	// The change runs while packets flow: sent at the start and at the
	// end of the call bound which packets each destination may have.
	newDests := []any{added.LocalAddr().String(), kept.LocalAddr().String()}
	if v6 != "" {
		newDests = append(newDests, v6)
	}
	keptLocal := st.(*Stage).LocalAddrs()[0].String()
	changed := make(chan error, 1)
	before := int(sent.Load())
	go func() {
		changed <- def.Reconfigure(st, map[string]any{"destinations": newDests, "batch": int64(16)})
	}()
	var after int
	for after == 0 {
		select {
		case err := <-changed:
			if err != nil {
				t.Fatalf("Reconfigure: %v", err)
			}
			after = int(sent.Load())
		default:
			sendChunk()
		}
	}
	for int(sent.Load()) < total {
		sendChunk()
	}
	// The kept destination kept its socket (it is second in the new list).
	if addrs := st.(*Stage).LocalAddrs(); len(addrs) != len(newDests) || addrs[1].String() != keptLocal {
		t.Errorf("sockets after the change %v; want %d with the kept one still %s", addrs, len(newDests), keptLocal)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}

	seqs, _ := rxKept.got()
	if first, n := contiguous(t, "kept", seqs); first != 0 || n != total {
		t.Fatalf("kept destination got %d packets from seq %d, want all %d from 0", n, first, total)
	}
	seqs, _ = rxRemoved.got()
	if first, n := contiguous(t, "removed", seqs); first != 0 || n < before || n > after {
		t.Fatalf("removed destination got %d packets from seq %d; want 0 … k-1 with %d ≤ k ≤ %d", n, first, before, after)
	}
	addedOnes := map[string]*receiver{"added": rxAdded}
	if rxV6 != nil {
		addedOnes["added IPv6"] = rxV6
	}
	for who, rx := range addedOnes {
		testrun.Eventually(t, 5*time.Second, who+" has the last packet", func() bool {
			seqs, _ := rx.got()
			return len(seqs) > 0 && seqs[len(seqs)-1] == total-1
		})
		seqs, names := rx.got()
		first, n := contiguous(t, who, seqs)
		if first+n != total || first > after {
			t.Fatalf("%s destination got seqs %d … %d; want a run ending at %d that starts by %d", who, first, first+n-1, total-1, after)
		}
		if !slices.Contains(names, "live/reload") {
			t.Errorf("%s destination was never told the stream's name (SDES %v)", who, names)
		}
	}
	t.Logf("change began after %d packets, returned after %d; removed got %d, added from %d", before, after, rxRemoved.count(), total-rxAdded.count())
}

// TestLiveDestinationsRefused: a new list that does not validate, or names a
// destination that cannot be opened, is refused with an error and the stage
// goes on sending to the destinations it had.
func TestLiveDestinationsRefused(t *testing.T) {
	def, _ := core.Default.Lookup("udp-sink")
	a, b := listen(t), listen(t)
	env := core.TestEnv("udp-sink")
	env.Clock = stagetest.NewFakeClock(time.Unix(1_700_000_000, 0))
	st, err := def.Build(map[string]any{"destinations": []any{a.LocalAddr().String()}}, env)
	if err != nil {
		t.Fatal(err)
	}
	h := stagetest.Start(t, st, env, false)
	sink := st.(*Stage)
	for _, bad := range [][]any{
		{b.LocalAddr().String(), "127.0.0.1"}, // no port: validation
		{},                                    // none at all
		{b.LocalAddr().String(), "[fe80::1]:5222"}, // link-local without a zone: connect fails
	} {
		if err := def.Reconfigure(st, map[string]any{"destinations": bad}); err == nil {
			t.Fatalf("destinations %v accepted", bad)
		} else {
			t.Logf("%v refused: %v", bad, err)
		}
		if addrs := sink.LocalAddrs(); len(addrs) != 1 {
			t.Fatalf("after a refused change the stage has %d destinations, want its 1", len(addrs))
		}
	}
	// A parameter that is not live: the host must restart the pipeline.
	err = def.Reconfigure(st, map[string]any{"destinations": []any{b.LocalAddr().String()}, "ttl": int64(4)})
	if !errors.Is(err, core.ErrNotLive) {
		t.Fatalf("a ttl change: %v, want ErrNotLive", err)
	}
	if addrs := sink.LocalAddrs(); len(addrs) != 1 {
		t.Fatalf("after a change refused as not live the stage has %d destinations, want its 1", len(addrs))
	}
	s := h.StartStream("live/x")
	want := rtpPacket(t, 1, 7, 7, 100)
	h.SendData(s, 0, 7, want)
	parseRTCP(t, read(t, a))
	if got := read(t, a); rtpheader.Seq(got) != 7 {
		t.Fatalf("got seq %d", rtpheader.Seq(got))
	}
	_ = b.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := b.Read(make([]byte, 2000)); err == nil {
		t.Fatalf("a destination of a refused change got %d bytes", n)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	// After Run ended a change is moot: accepted, nothing opened.
	if err := def.Reconfigure(st, map[string]any{"destinations": []any{b.LocalAddr().String()}}); err != nil {
		t.Fatalf("Reconfigure after the end: %v", err)
	}
}
