package authhook

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func key(s string) [sha256.Size]byte { return sha256.Sum256([]byte(s)) }

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestCacheExpiry(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	c := newCache(16, clk.now)
	e, leader := c.claim(key("a"), key("stream"))
	if !leader {
		t.Fatal("first claim is not the leader")
	}
	c.finish(e, Decision{Admit: true, Result: ResultAdmit}, 10*time.Second)
	clk.add(9 * time.Second)
	if e2, leader := c.claim(key("a"), key("stream")); leader || e2 != e {
		t.Fatal("a fresh answer was not reused")
	}
	clk.add(time.Second)
	e3, leader := c.claim(key("a"), key("stream"))
	if !leader || e3 == e {
		t.Fatal("an expired answer was reused")
	}
	// ttl 0: answers its waiters, then is not kept.
	c.finish(e3, Decision{Result: ResultRefuse}, 0)
	if _, leader := c.claim(key("a"), key("stream")); !leader {
		t.Fatal("an answer kept for 0 s was reused")
	}
}

func TestCacheBound(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	c := newCache(3, clk.now)
	for _, k := range []string{"a", "b", "c", "d"} {
		e, leader := c.claim(key(k), key("stream"))
		if !leader {
			t.Fatalf("%s: not the leader", k)
		}
		c.finish(e, Decision{Admit: true}, time.Minute)
	}
	if n := c.len(); n != 3 {
		t.Fatalf("%d entries, want the bound 3", n)
	}
	if _, leader := c.claim(key("a"), key("stream")); !leader {
		t.Error("the oldest entry was not the one evicted")
	}
	for _, k := range []string{"c", "d"} {
		if _, leader := c.claim(key(k), key("stream")); leader {
			t.Errorf("%s was evicted", k)
		}
	}
	if n := c.len(); n != 3 {
		t.Fatalf("%d entries, want the bound 3", n)
	}
	// An evicted call in flight still answers its waiters.
	inflight, _ := c.claim(key("x"), key("stream"))
	for _, k := range []string{"y", "z", "w"} {
		c.claim(key(k), key("stream"))
	}
	go c.finish(inflight, Decision{Admit: true, Result: ResultAdmit}, time.Minute)
	if d, ok := inflight.wait(context.Background()); !ok || !d.Admit {
		t.Fatalf("evicted entry answered %+v, %v", d, ok)
	}
	c.clear()
	if n := c.len(); n != 0 {
		t.Fatalf("%d entries after clear", n)
	}
}

func TestCacheSingleFlight(t *testing.T) {
	c := newCache(16, nil)
	const clients = 200
	var leaders atomic.Int32
	var admitted atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e, leader := c.claim(key("same"), key("stream"))
			if leader {
				leaders.Add(1)
				<-release
				c.finish(e, Decision{Admit: true}, time.Minute)
				admitted.Add(1)
				return
			}
			if d, ok := e.wait(context.Background()); ok && d.Admit {
				admitted.Add(1)
			}
		}()
	}
	close(release)
	wg.Wait()
	if n := leaders.Load(); n != 1 {
		t.Errorf("%d leaders for one key, want 1", n)
	}
	if n := admitted.Load(); n != clients {
		t.Errorf("%d of %d clients got the answer", n, clients)
	}
	// A waiter whose client leaves stops waiting.
	e, _ := c.claim(key("slow"), key("stream"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, ok := e.wait(ctx); ok {
		t.Error("a cancelled waiter got an answer")
	}
}

// An admit being renewed keeps admitting the clients that ask meanwhile
// without a wait; if the renewal's call fails it still holds, up to
// StaleGrace past its expiry; a refusal ends it at once; Forget drops it.
func TestCacheRenewal(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	c := newCache(16, clk.now)
	admit := Decision{Admit: true, Status: 200, Result: ResultAdmit}
	e, _ := c.claim(key("q"), key("live/a"))
	c.finish(e, admit, AdmitTTL)
	clk.add(AdmitTTL)
	renew, leader := c.claim(key("q"), key("live/a"))
	if !leader {
		t.Fatal("an expired admit was not renewed")
	}
	other, leader := c.claim(key("q"), key("live/a"))
	if leader || other != renew {
		t.Fatal("a second client started a second call")
	}
	if d, ok := c.staleAdmit(other); !ok || !d.Admit {
		t.Fatal("a client asking during the renewal waits instead of being admitted")
	}
	// The hook is down: the renewal fails, the admit holds.
	if d := c.finish(renew, Decision{Status: 403, Result: ResultErrorRefused}, RefuseTTL); !d.Admit || d.Result != ResultErrorAdmitted {
		t.Fatalf("a failed renewal gave %+v, want the admit kept", d)
	}
	// Still down past StaleGrace: refused.
	for clk.now().Before(time.Unix(1000, 0).Add(AdmitTTL + StaleGrace + RefuseTTL)) {
		clk.add(RefuseTTL)
		e, leader := c.claim(key("q"), key("live/a"))
		if !leader {
			continue
		}
		c.finish(e, Decision{Status: 403, Result: ResultErrorRefused}, RefuseTTL)
	}
	clk.add(RefuseTTL)
	e, _ = c.claim(key("q"), key("live/a"))
	if d := c.finish(e, Decision{Status: 403, Result: ResultErrorRefused}, RefuseTTL); d.Admit {
		t.Fatal("an admit held on past StaleGrace with the hook down")
	}
	// A hook that says no ends a renewed admit at once.
	f, _ := c.claim(key("r"), key("live/b"))
	c.finish(f, admit, AdmitTTL)
	clk.add(AdmitTTL)
	f, _ = c.claim(key("r"), key("live/b"))
	if d := c.finish(f, Decision{Status: 403, Result: ResultRefuse}, RefuseTTL); d.Admit {
		t.Fatal("a refusal during the renewal admitted")
	}
	// Forget drops what is kept for a stream, and only for it.
	g, _ := c.claim(key("s"), key("live/c"))
	c.finish(g, admit, AdmitTTL)
	h, _ := c.claim(key("t"), key("live/d"))
	c.finish(h, admit, AdmitTTL)
	c.forget(key("live/c"))
	if _, leader := c.claim(key("s"), key("live/c")); !leader {
		t.Error("a forgotten stream's answer was reused")
	}
	if _, leader := c.claim(key("t"), key("live/d")); leader {
		t.Error("forget dropped another stream's answer")
	}
}

// Made-up questions (refused) push out each other, not the admits real
// viewers play on.
func TestCacheKeepsAdmitsUnderAFlood(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	c := newCache(4, clk.now)
	e, _ := c.claim(key("real"), key("live/a"))
	c.finish(e, Decision{Admit: true, Result: ResultAdmit}, AdmitTTL)
	for i := range 100 {
		e, leader := c.claim(key(fmt.Sprint("junk", i)), key("live/x"))
		if leader {
			c.finish(e, Decision{Status: 403, Result: ResultRefuse}, RefuseTTL)
		}
	}
	if _, leader := c.claim(key("real"), key("live/a")); leader {
		t.Error("a flood of refused questions evicted a kept admit")
	}
}
