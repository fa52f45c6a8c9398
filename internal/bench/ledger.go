package bench

import (
	"hash/maphash"
	"sort"
	"sync"

	"github.com/mediapipe/mediapipe/core/media/flv"
)

// book is where a viewer looks up a tag it got: rec (write time, hash,
// size) and the tag's place in publish order.
type book interface {
	lookup(typ uint8, ts uint32) (rec, int, bool)
}

// ledger is one stream's record of what its publisher sent: for each media
// tag, keyed by (timestamp, type), when it was written and a hash of its
// body. Viewers look their tags up in it to measure latency and to check
// that what they got is byte for byte what was published.
type ledger struct {
	mu   sync.RWMutex
	recs []rec
	base int // sequence number of recs[0]
	idx  map[uint64]int
}

type rec struct {
	at   int64 // UnixNano the publisher wrote the tag
	hash uint64
	size int
	key  bool // a video keyframe
}

// ledgerMax bounds a ledger: past it the older half is forgotten, and a
// viewer so far behind counts its tags as stale rather than matched.
const ledgerMax = 1 << 18

func newLedger() *ledger { return &ledger{idx: map[uint64]int{}} }

func tagKey(typ uint8, ts uint32) uint64 { return uint64(ts)<<8 | uint64(typ) }

func (l *ledger) add(typ uint8, ts uint32, at int64, body []byte) {
	r := rec{at: at, hash: hashBody(body), size: len(body),
		key: typ == flv.TypeVideo && flv.IsVideoKeyframe(body) && !isSequenceHeader(typ, body)}
	l.mu.Lock()
	if len(l.recs) >= ledgerMax {
		// Keys are not stored beside records: map entries of the forgotten
		// half are swept only now and then; lookup checks the window.
		half := len(l.recs) / 2
		l.recs = append(l.recs[:0:0], l.recs[half:]...)
		l.base += half
		if len(l.idx) > 2*ledgerMax {
			for k, i := range l.idx {
				if i < l.base {
					delete(l.idx, k)
				}
			}
		}
	}
	l.idx[tagKey(typ, ts)] = l.base + len(l.recs)
	l.recs = append(l.recs, r)
	l.mu.Unlock()
}

// lookup returns the record of (typ, ts) and its sequence number.
func (l *ledger) lookup(typ uint8, ts uint32) (rec, int, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	i, ok := l.idx[tagKey(typ, ts)]
	if !ok || i < l.base {
		return rec{}, 0, false
	}
	return l.recs[i-l.base], i, true
}

// keyAfter is the sequence number of the first video keyframe written at
// or after at (UnixNano), -1 if there is none (yet, or any more).
func (l *ledger) keyAfter(at int64) int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	i := sort.Search(len(l.recs), func(i int) bool { return l.recs[i].at >= at })
	for ; i < len(l.recs); i++ {
		if l.recs[i].key {
			return int64(l.base + i)
		}
	}
	return -1
}

var hashSeed = maphash.MakeSeed()

// hashBody hashes a tag body with maphash (AES-based, no allocation): FNV
// byte by byte cost the viewers a tenth of the process's CPU.
func hashBody(b []byte) uint64 { return maphash.Bytes(hashSeed, b) }
