package authhook

import (
	"context"
	"crypto/sha256"
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
	e, leader := c.claim(key("a"))
	if !leader {
		t.Fatal("first claim is not the leader")
	}
	c.finish(e, Decision{Admit: true, Result: ResultAdmit}, 10*time.Second)
	clk.add(9 * time.Second)
	if e2, leader := c.claim(key("a")); leader || e2 != e {
		t.Fatal("a fresh answer was not reused")
	}
	clk.add(time.Second)
	e3, leader := c.claim(key("a"))
	if !leader || e3 == e {
		t.Fatal("an expired answer was reused")
	}
	// ttl 0: answers its waiters, then is not kept.
	c.finish(e3, Decision{Result: ResultRefuse}, 0)
	if _, leader := c.claim(key("a")); !leader {
		t.Fatal("an answer kept for 0 s was reused")
	}
}

func TestCacheBound(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	c := newCache(3, clk.now)
	for _, k := range []string{"a", "b", "c", "d"} {
		e, leader := c.claim(key(k))
		if !leader {
			t.Fatalf("%s: not the leader", k)
		}
		c.finish(e, Decision{Admit: true}, time.Minute)
	}
	if n := c.len(); n != 3 {
		t.Fatalf("%d entries, want the bound 3", n)
	}
	if _, leader := c.claim(key("a")); !leader {
		t.Error("the oldest entry was not the one evicted")
	}
	for _, k := range []string{"c", "d"} {
		if _, leader := c.claim(key(k)); leader {
			t.Errorf("%s was evicted", k)
		}
	}
	if n := c.len(); n != 3 {
		t.Fatalf("%d entries, want the bound 3", n)
	}
	// An evicted call in flight still answers its waiters.
	inflight, _ := c.claim(key("x"))
	for _, k := range []string{"y", "z", "w"} {
		c.claim(key(k))
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
			e, leader := c.claim(key("same"))
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
	e, _ := c.claim(key("slow"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, ok := e.wait(ctx); ok {
		t.Error("a cancelled waiter got an answer")
	}
}
