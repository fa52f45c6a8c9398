package sdk

import (
	"sync/atomic"

	"github.com/mediapipe/mediapipe/core"
)

// intake is the stage's input channel with a count of how many of the host's
// data packets the stage has taken from it, so the host can tell what a dead
// plugin had not finished (Batch.consumed). The stage's receive is not
// touched: the channel is FIFO, so the stage has taken the first
// pushed-len(ch) packets, and ring remembers, for each of the last packets
// pushed, how many data packets the host had sent up to it.
type intake struct {
	ch     chan *core.Packet
	pushed atomic.Uint64 // packets put on ch (raised after the send)
	data   uint64        // the feed's own: host data packets received so far
	// ring[i%len] is data as of the i-th packet pushed. Entries live longer
	// than any packet waits on ch (cap(ch)+1 at most between push and take).
	ring [inQueue + 4]atomic.Uint64
}

func newIntake() *intake { return &intake{ch: make(chan *core.Packet, inQueue)} }

// received counts one host data packet, whether or not it reaches ch.
func (k *intake) received() { k.data++ }

// push puts p on ch, or gives up when stop closes first. Feed's goroutine only.
func (k *intake) push(p *core.Packet, stop <-chan struct{}) bool {
	n := k.pushed.Load()
	k.ring[n%uint64(len(k.ring))].Store(k.data)
	select {
	case k.ch <- p:
		// Raised after the send: meanwhile taken is one short, never over.
		k.pushed.Store(n + 1)
		return true
	case <-stop:
		return false
	}
}

// taken is how many host data packets the stage has taken from ch. Safe from
// any goroutine.
func (k *intake) taken() uint64 {
	n := k.pushed.Load()
	q := uint64(len(k.ch))
	if q >= n {
		return 0
	}
	return k.ring[(n-q-1)%uint64(len(k.ring))].Load()
}
