package shared

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/mediapipe/mediapipe/core"
)

// Table maps the stream ids used on the wire to streams on this side of a
// plugin connection. An ended stream stays findable for a grace period, since
// the other side may still answer about it.
type Table struct {
	mu    sync.Mutex
	byID  map[uint64]*Entry
	byPtr map[*core.Stream]*Entry
}

// Entry is one stream known to both sides.
type Entry struct {
	ID uint64
	S  *core.Stream
	// Name is S.Name when added: a stage that sets S.Name later has renamed
	// the stream in place, which the other side must hear about.
	Name string
	// InitSent is the init tags the other side last learned, so a change is
	// sent once and a received one is not echoed back.
	InitSent atomic.Pointer[core.InitTags]
	ended    time.Time
}

// Grace is how long an ended stream stays in a Table.
const Grace = 30 * time.Second

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{byID: map[uint64]*Entry{}, byPtr: map[*core.Stream]*Entry{}}
}

// Add records s under id, replacing an earlier stream of that id, and
// forgets streams that ended more than Grace ago.
func (t *Table) Add(id uint64, s *core.Stream) *Entry {
	e := &Entry{ID: id, S: s, Name: s.Name}
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, old := range t.byID {
		if !old.ended.IsZero() && now.Sub(old.ended) > Grace {
			delete(t.byID, k)
			delete(t.byPtr, old.S)
		}
	}
	if old := t.byID[id]; old != nil {
		delete(t.byPtr, old.S)
	}
	t.byID[id] = e
	t.byPtr[s] = e
	return e
}

// ByID returns the entry of wire id, or nil.
func (t *Table) ByID(id uint64) *Entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byID[id]
}

// ByPtr returns the entry of s, or nil.
func (t *Table) ByPtr(s *core.Stream) *Entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byPtr[s]
}

// End marks e ended; it is forgotten after Grace.
func (t *Table) End(e *Entry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e.ended = time.Now()
}

// Live returns the entries not ended, for re-announcing them.
func (t *Table) Live() []*Entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*Entry
	for _, e := range t.byID {
		if e.ended.IsZero() {
			out = append(out, e)
		}
	}
	return out
}
