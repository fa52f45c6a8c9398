package host

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
)

// hookTestSet starts one hook (queue places) at url on a fresh bus.
func hookTestSet(t *testing.T, url string, queue int) (*core.Bus, *hookSet) {
	t.Helper()
	bus := core.NewBus()
	cfg := &HookConfig{Index: 1, URL: url, Events: []string{core.NoticePublish}, Secret: "k", Queue: queue}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return bus, startHooks([]*HookConfig{cfg}, bus, core.NewMetrics(), slog.New(slog.DiscardHandler))
}

func hookCounts(hs *hookSet) (delivered, failed, dropped float64) {
	s := hs.senders[0]
	return core.CounterValue(s.delivered), core.CounterValue(s.failed), core.CounterValue(s.dropped)
}

// A receiver that hangs costs the publisher nothing: events beyond the
// queue are dropped and counted at once, and at shutdown what is queued
// and in flight gets the drain time, then is counted dropped.
func TestHookFullQueueDropsWithoutWaiting(t *testing.T) {
	release := make(chan struct{})
	var got atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	bus, hs := hookTestSet(t, srv.URL, 2)
	ev := core.Notice{Name: core.NoticePublish, Stream: "live/a"}
	bus.Publish(ev)
	// (No testrun.Eventually here: it imports host.)
	for deadline := time.Now().Add(5 * time.Second); got.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	for range 9 {
		bus.Publish(ev)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("publishing 9 events to a hanging hook took %v", d)
	}
	// One is in flight, two queued, the rest dropped.
	if _, _, dropped := hookCounts(hs); dropped != 7 {
		t.Errorf("dropped %v at once, want 7 (10 less one in flight and two queued)", dropped)
	}
	start = time.Now()
	hs.close(200 * time.Millisecond)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("close took %v with a drain of 200ms", d)
	}
	if delivered, failed, dropped := hookCounts(hs); delivered != 0 || failed != 0 || dropped != 10 {
		t.Errorf("delivered %v failed %v dropped %v, want 0 0 10", delivered, failed, dropped)
	}
}

// A receiver that fails twice then answers gets the event once, signed;
// events after it wait their turn (order is kept).
func TestHookRetriesInOrder(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	fails := 2
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n core.Notice
		err := json.NewDecoder(r.Body).Decode(&n)
		mu.Lock()
		defer mu.Unlock()
		if fails > 0 {
			fails--
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if err != nil || r.Header.Get("X-Mediapipe-Signature") == "" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		bodies = append(bodies, n.Stream)
	}))
	defer srv.Close()
	bus, hs := hookTestSet(t, srv.URL, 8)
	bus.Publish(core.Notice{Name: core.NoticePublish, Stream: "a"})
	bus.Publish(core.Notice{Name: core.NoticePlay, Stream: "not wanted"})
	bus.Publish(core.Notice{Name: core.NoticePublish, Stream: "b"})
	hs.close(10 * time.Second) // delivers what is queued, retries included
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 2 || bodies[0] != "a" || bodies[1] != "b" {
		t.Errorf("received %q, want [a b]", bodies)
	}
	if delivered, failed, dropped := hookCounts(hs); delivered != 2 || failed != 0 || dropped != 0 {
		t.Errorf("delivered %v failed %v dropped %v, want 2 0 0", delivered, failed, dropped)
	}
}

func TestSignIsHexHMACSHA256(t *testing.T) {
	// RFC 4231 test case 2.
	got := Sign("Jefe", []byte("what do ya want for nothing?"))
	if want := "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"; got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
}
