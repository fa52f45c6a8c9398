package authhook

import (
	"container/list"
	"context"
	"crypto/sha256"
	"sync"
	"time"
)

// cache holds the hook's recent answers per (action, stream, query) and
// the calls in flight, so that many clients asking the same question at
// once make one call (single flight) and a player's steady requests make
// none. It holds at most max entries: the oldest is evicted first (an
// evicted call in flight still answers the clients already waiting on it).
// Keys are digests, so an entry's size does not depend on what a client
// sends.
type cache struct {
	max int
	now func() time.Time

	mu    sync.Mutex
	m     map[[sha256.Size]byte]*entry
	order *list.List // of *entry, oldest first
}

type entry struct {
	key    [sha256.Size]byte
	stream [sha256.Size]byte // the question's stream, digested: Forget finds it
	el     *list.Element
	done   chan struct{} // closed once d is set

	// set under cache.mu before done closes
	ready   bool
	expires time.Time
	d       Decision

	// An admit being renewed: clients asking meanwhile are admitted at once
	// rather than waiting for the call, and a call that fails keeps it
	// until staleUntil (the hook being down does not cut off viewers it
	// admitted a moment ago: an HLS player asks every part).
	stale      bool
	staleUntil time.Time
}

func newCache(max int, now func() time.Time) *cache {
	if now == nil {
		now = time.Now
	}
	return &cache{max: max, now: now, m: map[[sha256.Size]byte]*entry{}, order: list.New()}
}

// claim returns key's entry, fresh or in flight, with leader false; or, when
// there is none (or it expired), a new entry in flight with leader true: the
// caller must then make the call and finish the entry.
func (c *cache) claim(key, stream [sha256.Size]byte) (e *entry, leader bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	var renew *entry
	if old := c.m[key]; old != nil {
		if !old.ready || now.Before(old.expires) {
			return old, false
		}
		c.remove(old)
		if old.d.Admit {
			renew = old
		}
	}
	for len(c.m) >= c.max {
		c.remove(c.victim())
	}
	e = &entry{key: key, stream: stream, done: make(chan struct{})}
	if renew != nil {
		e.stale, e.d = true, renew.d
		e.staleUntil = renew.expires.Add(StaleGrace)
		if renew.stale && renew.staleUntil.Before(e.staleUntil) {
			e.staleUntil = renew.staleUntil // kept through a failure: no longer
		}
	}
	e.el = c.order.PushBack(e)
	c.m[key] = e
	return e, true
}

// victim is the entry to evict: the oldest that is not an admit, so a
// stranger asking many made-up questions (each refused) pushes out other
// refusals and calls, not the answers real viewers are playing on; the
// oldest of all when every entry is an admit.
func (c *cache) victim() *entry {
	for el := c.order.Front(); el != nil; el = el.Next() {
		if e := el.Value.(*entry); !e.ready || !e.d.Admit {
			return e
		}
	}
	return c.order.Front().Value.(*entry)
}

// staleAdmit returns the admit e renews while its call is in flight.
func (c *cache) staleAdmit(e *entry) (Decision, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !e.ready && e.stale {
		return e.d, true
	}
	return Decision{}, false
}

// forget drops the answers kept for stream (a client of it was kicked: it
// must ask again).
func (c *cache) forget(stream [sha256.Size]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.m {
		if e.stream == stream && e.ready {
			c.remove(e)
		}
	}
}

// finish records the leader's decision, keeps it for ttl (0: not kept) and
// wakes the clients waiting on it.
func (c *cache) finish(e *entry, d Decision, ttl time.Duration) Decision {
	c.mu.Lock()
	if e.stale && d.Result == ResultErrorRefused && c.now().Before(e.staleUntil) {
		// The call failed while renewing an admit: keep admitting, and
		// ask again soon.
		d, ttl = Decision{Admit: true, Status: e.d.Status, Result: ResultErrorAdmitted}, RefuseTTL
	} else {
		e.stale = false
	}
	e.d, e.ready, e.expires = d, true, c.now().Add(ttl)
	if ttl <= 0 && c.m[e.key] == e {
		c.remove(e)
	}
	c.mu.Unlock()
	close(e.done)
	return d
}

// wait returns e's decision once it is known, or false if ctx ends first.
func (e *entry) wait(ctx context.Context) (Decision, bool) {
	select {
	case <-e.done:
		return e.d, true
	case <-ctx.Done():
		return Decision{}, false
	}
}

func (c *cache) remove(e *entry) {
	delete(c.m, e.key)
	c.order.Remove(e.el)
}

// clear forgets every entry (a reload changed the hook): calls in flight
// still answer the clients waiting on them.
func (c *cache) clear() {
	c.mu.Lock()
	clear(c.m)
	c.order.Init()
	c.mu.Unlock()
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
