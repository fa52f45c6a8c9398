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
	key  [sha256.Size]byte
	el   *list.Element
	done chan struct{} // closed once d is set

	// set under cache.mu before done closes
	ready   bool
	expires time.Time
	d       Decision
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
func (c *cache) claim(key [sha256.Size]byte) (e *entry, leader bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.m[key]; e != nil {
		if !e.ready || c.now().Before(e.expires) {
			return e, false
		}
		c.remove(e)
	}
	for len(c.m) >= c.max {
		c.remove(c.order.Front().Value.(*entry))
	}
	e = &entry{key: key, done: make(chan struct{})}
	e.el = c.order.PushBack(e)
	c.m[key] = e
	return e, true
}

// finish records the leader's decision, keeps it for ttl (0: not kept) and
// wakes the clients waiting on it.
func (c *cache) finish(e *entry, d Decision, ttl time.Duration) {
	c.mu.Lock()
	e.d, e.ready, e.expires = d, true, c.now().Add(ttl)
	if ttl <= 0 && c.m[e.key] == e {
		c.remove(e)
	}
	c.mu.Unlock()
	close(e.done)
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
