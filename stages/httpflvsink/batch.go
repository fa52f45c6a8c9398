package httpflvsink

import (
	"errors"
	"sync/atomic"

	"github.com/mediapipe/mediapipe/internal/uring"
)

// The flusher sends every viewer it takes in one batch, one io_uring_enter
// for all of them (internal/uring), where a writev each would cost a system
// call per viewer per flush. Without io_uring it writes each viewer with its
// own writev.
//
// A batch writes to raw descriptors, outside the poll.FD reference that
// RawConn.Write holds: a viewer shed meanwhile (abort) or leaving (its
// goroutine's conn.Close) would close the descriptor mid-batch, and a
// connection accepted meanwhile could get the number and the bytes. So the
// flusher sends on its own reference to the viewer's socket, taken the
// first time it takes the viewer: a slot of the ring's registered files
// (which also spares the kernel a descriptor lookup and reference count
// per send), or, where the kernel refuses the table or every slot is
// taken, a duplicate descriptor. It is let go only when the flusher no
// longer owns the viewer: by viewerLeft, or, when it finds the flusher
// writing, by the flusher once it is done. The socket lives until its last
// reference goes, which is at most the end of the flush in progress, so
// abort's reset (SO_LINGER 0 on the socket) still comes promptly (kernels
// before 6.0 may put an emptied slot's file up to a second later).

// Where the flusher's reference to the viewer's socket stands (sockSt).
const (
	sockNone   uint8 = iota // not taken yet
	sockSlot                // sock is a registered file's slot of ring
	sockOpen                // sock is the flusher's duplicate descriptor
	sockFailed              // none to be had, or let go: writev only
)

// fileSlots bounds the flusher's registered files: the viewers past it are
// sent on a duplicate descriptor each, as without the table.
const fileSlots = 4096

// sockRef is a reference to a viewer's socket that takeSock took off it,
// for release to let go of outside the viewer's lock.
type sockRef struct {
	st   uint8
	n    int         // the descriptor, or the slot
	ring *uring.Ring // the slot's
}

// release lets go of the reference.
func (r sockRef) release() {
	switch r.st {
	case sockOpen:
		closeSock(r.n)
	case sockSlot:
		if err := r.ring.Unregister(r.n); err != nil {
			slotLeaks.Add(1) // the slot stays taken until the ring closes
		}
	}
}

// batchedSend is a viewer in the batch being sent, and its result.
type batchedSend struct {
	v    *viewer
	want int // bytes framed for the send
	n    int
	err  error
}

// newFlusher sets up the flusher, with an io_uring where the system has one.
func newFlusher(s *Stage) *flusher {
	f := &flusher{s: s}
	if haveWritev {
		r, err := newRing(uring.DefaultEntries)
		if err != nil {
			s.env.Log.Info("httpflv-sink: no io_uring, one writev per viewer and flush", "err", err)
			return f
		}
		f.ring = r
		if err := registerFiles(r, fileSlots); err != nil {
			s.env.Log.Info("httpflv-sink: io_uring refused registered files, a duplicate descriptor per viewer", "err", err)
		} else {
			f.fixed = true
		}
	}
	return f
}

// newRing sets up the flusher's ring; tests of the writev path swap in a
// refusal, as a kernel without io_uring gives.
var newRing = uring.New

// registerFiles gives the ring its table; tests swap in a refusal, as an
// older kernel gives.
var registerFiles = (*uring.Ring).RegisterFiles

var (
	// batchesSent counts Submits, for tests to see the batched path ran.
	batchesSent atomic.Int64
	// noSlot counts viewers sent on a duplicate descriptor because every
	// registered slot was taken; slotLeaks, slots the kernel would not
	// empty (not expected).
	noSlot, slotLeaks atomic.Int64
)

// close lets go of the ring; the flusher no longer runs.
func (f *flusher) close() {
	if f.ring != nil {
		_ = f.ring.Close()
		f.ring = nil
	}
}

// batchable says whether v (the flusher's) can join a batch, taking the
// flusher's reference to its socket the first time.
func (f *flusher) batchable(v *viewer) bool {
	if f.ring == nil {
		return false
	}
	switch v.sockSt {
	case sockSlot, sockOpen:
		return true
	case sockFailed:
		return false
	}
	if f.fixed {
		slot, err := registerSocket(f.ring, v.raw)
		if err == nil {
			v.sock, v.sockSt, v.ring = slot, sockSlot, f.ring
			return true
		}
		if errors.Is(err, uring.ErrNoSlot) {
			if noSlot.Add(1); !f.full {
				f.full = true
				f.s.env.Log.Warn("httpflv-sink: every registered file slot is taken, more viewers get a duplicate descriptor each", "slots", fileSlots)
			}
		}
		// Else closed meanwhile, or out of memory: the duplicate
		// decides.
	}
	fd, err := dupSocket(v.raw)
	if err != nil { // out of descriptors, or closed meanwhile
		v.sockSt = sockFailed
		return false
	}
	v.sock, v.sockSt = fd, sockOpen
	return true
}

// takeSock takes the flusher's reference to v's socket off v, for the
// caller to release (v.mu held, and the flusher not owning v).
func (v *viewer) takeSock() sockRef {
	r := sockRef{st: v.sockSt, n: v.sock, ring: v.ring}
	if v.sockSt == sockSlot || v.sockSt == sockOpen {
		v.sockSt = sockFailed
	}
	v.ring = nil
	return r
}

// queue adds v's next write to the batch; with nothing to frame, v is done.
func (f *flusher) queue(v *viewer) {
	f.bufs = v.frame(f.bufs[:0], min(maxIov, uring.MaxIov))
	want := 0
	for _, b := range f.bufs {
		want += len(b)
	}
	if want == 0 {
		f.release(v, nil)
		return
	}
	if v.sockSt == sockSlot {
		f.ring.AddFixed(v.sock, f.bufs)
	} else {
		f.ring.Add(v.sock, f.bufs)
	}
	clear(f.bufs) // the ring holds the buffers; v.out holds their tags
	f.batch = append(f.batch, batchedSend{v: v, want: want})
}

// sendBatch sends the batch, and again for viewers that took all of their
// write and have more (a queue longer than one write's iovecs), then hands
// each viewer back as flush does.
func (f *flusher) sendBatch() {
	for len(f.batch) > 0 {
		err := f.ring.Submit()
		batchesSent.Add(1)
		total := 0
		for i := range f.batch {
			p := &f.batch[i]
			p.n, p.err = f.ring.Result(i)
			total += p.n
		}
		f.s.mBytes.Add(float64(total))
		if err != nil {
			// Not expected; the sends it did not finish failed, and
			// later flushes write viewers one by one.
			f.s.env.Log.Warn("httpflv-sink: io_uring failed, one writev per viewer from now on", "err", err)
			f.close()
		}
		// Results are all read: queue may now start the next batch.
		again := len(f.batch)
		for i := range again {
			p := f.batch[i]
			f.batch[i] = batchedSend{}
			if p.err != nil {
				f.release(p.v, p.err)
				continue
			}
			p.v.sent(p.n)
			if p.n < p.want || len(p.v.out) == 0 || f.ring == nil {
				f.release(p.v, nil) // the socket is full, or v is done
				continue
			}
			f.queue(p.v)
		}
		n := copy(f.batch, f.batch[again:])
		clear(f.batch[n:])
		f.batch = f.batch[:n]
	}
}
