package uring

import (
	"bytes"
	"errors"
	"io"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/internal/testrun"
)

func newRing(t *testing.T) *Ring {
	t.Helper()
	r, err := New(0)
	if err != nil {
		t.Skip(err) // no io_uring here: the callers' writev path is what runs
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// A socket nobody reads fills up; a send to it then completes at once with
// EAGAIN (0 bytes, no error) instead of waiting for room.
func TestFullSocketIsEAGAIN(t *testing.T) {
	r := newRing(t)
	p := newPairs(t, 1, true)
	_ = p.w[0].SetWriteBuffer(16 << 10)
	buf := make([]byte, 64<<10)
	done := make(chan int, 1)
	go func() {
		total := 0
		for range 1000 {
			i := r.Add(p.fds[0], [][]byte{buf})
			if err := r.Submit(); err != nil {
				t.Error(err)
				break
			}
			n, err := r.Result(i)
			if err != nil {
				t.Error(err)
				break
			}
			if n == 0 {
				break
			}
			total += n
		}
		done <- total
	}()
	total := testrun.Within(t, done, 5*time.Second, "sends to a full socket to return")
	if total == 0 || total >= 1000*len(buf) {
		t.Fatalf("sent %d bytes before the socket was full", total)
	}
}

// Many sockets each get their bytes intact and in order, through batches
// larger than the ring (split into several system calls), a short write's
// rest sent again in the next batch.
func TestManySocketsInOrder(t *testing.T) {
	r, err := New(8)
	if err != nil {
		t.Skip(err)
	}
	defer r.Close()
	const conns, rounds = 50, 200
	p := newPairs(t, conns, false)
	got := make([]chan []byte, conns)
	for i, c := range p.r {
		got[i] = make(chan []byte, 1)
		go func() {
			b, _ := io.ReadAll(c)
			got[i] <- b
		}()
	}
	want := make([][]byte, conns)
	left := make([][]byte, conns) // queued, not yet taken by the socket
	for round := range rounds {
		for i := range conns {
			// 1-3 buffers per send, their bytes naming the socket and round.
			msg := bytes.Repeat([]byte{byte(i), byte(round)}, 100+(i*round)%900)
			want[i] = append(want[i], msg...)
			left[i] = append(left[i], msg...)
		}
		for i := range conns {
			b := left[i]
			third := len(b) / 3
			r.Add(p.fds[i], [][]byte{b[:third], b[third : 2*third], b[2*third:]})
		}
		if err := r.Submit(); err != nil {
			t.Fatal(err)
		}
		for i := range conns {
			n, err := r.Result(i)
			if err != nil {
				t.Fatalf("socket %d round %d: %v", i, round, err)
			}
			left[i] = left[i][n:]
		}
	}
	// The rest, until every socket took everything.
	for busy := true; busy; {
		busy = false
		for i := range conns {
			if len(left[i]) > 0 {
				busy = true
				n, err := writeAll(r, p.fds[i], left[i])
				if err != nil {
					t.Fatal(err)
				}
				left[i] = left[i][n:]
			}
		}
	}
	for i, c := range p.w {
		c.Close()
		b := testrun.Within(t, got[i], 5*time.Second, "the reader to see the end")
		if !bytes.Equal(b, want[i]) {
			t.Fatalf("socket %d: got %d bytes, want %d, or different", i, len(b), len(want[i]))
		}
	}
}

func writeAll(r *Ring, fd int, b []byte) (int, error) {
	i := r.Add(fd, [][]byte{b})
	if err := r.Submit(); err != nil {
		return 0, err
	}
	return r.Result(i)
}

// A full socket takes part of a send: the result is the bytes it took.
func TestShortWrite(t *testing.T) {
	r := newRing(t)
	p := newPairs(t, 1, true)
	_ = p.w[0].SetWriteBuffer(16 << 10)
	_ = p.r[0].SetReadBuffer(16 << 10)
	big := make([]byte, 4<<20)
	n, err := writeAll(r, p.fds[0], big)
	if err != nil || n <= 0 || n >= len(big) {
		t.Fatalf("sent %d of %d bytes, err %v; want a short write", n, len(big), err)
	}
}

// A peer that reset the connection fails the send with an error, and the
// ring goes on serving other sockets.
func TestResetPeerIsAnError(t *testing.T) {
	r := newRing(t)
	p := newPairs(t, 2, true)
	_ = p.r[0].SetLinger(0)
	p.r[0].Close()
	p.drain(t)
	buf := make([]byte, 1000)
	var ferr error
	for range 100 { // the reset may take a moment to arrive
		if _, ferr = writeAll(r, p.fds[0], buf); ferr != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if !errors.Is(ferr, syscall.ECONNRESET) && !errors.Is(ferr, syscall.EPIPE) {
		t.Fatalf("send to a reset peer: %v, want ECONNRESET or EPIPE", ferr)
	}
	if n, err := writeAll(r, p.fds[1], buf); n != len(buf) || err != nil {
		t.Fatalf("send to a live peer after: %d, %v", n, err)
	}
}

// Close gives back the ring's descriptor and mappings, and a closed ring
// refuses sends instead of touching unmapped memory.
func TestCloseLeaksNothing(t *testing.T) {
	fds := func() int {
		es, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(es)
	}
	before, routines := fds(), runtime.NumGoroutine()
	for range 10 {
		r := newRing(t)
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		r.Add(0, [][]byte{[]byte("x")})
		if err := r.Submit(); err == nil {
			t.Fatal("a closed ring sent")
		}
		if _, err := r.Result(0); err == nil {
			t.Fatal("a closed ring's send has no error")
		}
	}
	if after := fds(); after != before {
		t.Fatalf("%d descriptors open after, %d before", after, before)
	}
	if n := runtime.NumGoroutine(); n > routines {
		t.Fatalf("%d goroutines after, %d before", n, routines)
	}
}

// A batch in steady state allocates nothing.
func TestSubmitDoesNotAllocate(t *testing.T) {
	r := newRing(t)
	p := newPairs(t, 20, true)
	p.drain(t)
	bufs := payload(2)
	allocs := testing.AllocsPerRun(100, func() {
		for _, fd := range p.fds {
			r.Add(fd, bufs)
		}
		if err := r.Submit(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per batch", allocs)
	}
}
