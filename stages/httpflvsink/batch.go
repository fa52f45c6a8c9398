package httpflvsink

import (
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
// flusher sends on its own duplicate of the viewer's socket (made the
// first time it takes the viewer), closed only when the flusher no longer
// owns the viewer: by viewerLeft, or, when it finds the flusher writing, by
// the flusher once it is done. The socket lives until its last descriptor
// closes, which is at most the end of the flush in progress, so abort's
// reset (SO_LINGER 0 on the socket) still comes promptly.
// Registered files would hold the socket the same way, and were tried
// (IOSQE_FIXED_FILE, a slot per viewer): they spare the kernel fget/fput
// per send, but what those cost was the first touch of the socket's cold
// struct file, which sock_from_file then pays instead. perf at 1 stream x
// 200 viewers: fget+fput 2.75 % of the relay, then sock_from_file 2.32 %
// plus 0.12 %; the Fanout benchmark and perf stat of the relay showed no
// difference beyond the noise. Not worth a second path beside this one.

// Where the viewer's duplicate descriptor stands (sockSt).
const (
	sockNone   uint8 = iota // not made yet
	sockOpen                // sock is the flusher's to send on
	sockFailed              // none to be had, or closed: writev only
)

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
		} else {
			f.ring = r
		}
	}
	return f
}

// newRing sets up the flusher's ring; tests of the writev path swap in a
// refusal, as a kernel without io_uring gives.
var newRing = uring.New

// batchesSent counts Submits, for tests to see the batched path ran.
var batchesSent atomic.Int64

// close lets go of the ring; the flusher no longer runs.
func (f *flusher) close() {
	if f.ring != nil {
		_ = f.ring.Close()
		f.ring = nil
	}
}

// batchable says whether v (the flusher's) can join a batch, making the
// flusher's duplicate of its socket the first time.
func (f *flusher) batchable(v *viewer) bool {
	if f.ring == nil {
		return false
	}
	switch v.sockSt {
	case sockOpen:
		return true
	case sockFailed:
		return false
	}
	fd, err := dupSocket(v.raw)
	if err != nil { // out of descriptors, or closed meanwhile
		v.sockSt = sockFailed
		return false
	}
	v.sock, v.sockSt = fd, sockOpen
	return true
}

// takeSock returns the duplicate descriptor for the caller to close, or
// -1 (v.mu held, and the flusher not owning v).
func (v *viewer) takeSock() int {
	if v.sockSt != sockOpen {
		return -1
	}
	v.sockSt = sockFailed
	return v.sock
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
	f.ring.Add(v.sock, f.bufs)
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
