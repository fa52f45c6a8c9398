package uring

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// registeredRing is a ring with a table of n slots.
func registeredRing(t *testing.T, n int) *Ring {
	t.Helper()
	r := newRing(t)
	if err := r.RegisterFiles(n); err != nil {
		t.Skip(err) // refused: callers send to plain descriptors
	}
	return r
}

// readN reads exactly n bytes from c, or fails the test.
func readN(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return string(b)
}

// sendAll queues each send and submits them as one batch; a send that
// fails or falls short fails the test.
func sendAll(t *testing.T, r *Ring, sends ...func() (int, int)) {
	t.Helper()
	idx, want := make([]int, len(sends)), make([]int, len(sends))
	for i, s := range sends {
		idx[i], want[i] = s()
	}
	if err := r.Submit(); err != nil {
		t.Fatal(err)
	}
	for i := range sends {
		if n, err := r.Result(idx[i]); n != want[i] || err != nil {
			t.Fatalf("send %d: %d bytes, %v; want %d", i, n, err, want[i])
		}
	}
}

func fixed(r *Ring, slot int, s string) func() (int, int) {
	return func() (int, int) { return r.AddFixed(slot, [][]byte{[]byte(s)}), len(s) }
}

func plain(r *Ring, fd int, s string) func() (int, int) {
	return func() (int, int) { return r.Add(fd, [][]byte{[]byte(s)}), len(s) }
}

// A slot's life: filled while one is free, sent to in a batch beside plain
// descriptors, still the same socket after the descriptor it came from is
// closed (and its number free for anyone), emptied, which lets go of the
// socket, then free for the next.
func TestRegisteredFileSlots(t *testing.T) {
	for _, kernel := range []string{"sparse", "before-5.19"} {
		t.Run(kernel, func(t *testing.T) {
			if kernel != "sparse" {
				sparseFilesOp = 255 // unknown: EINVAL, then a table of -1s
				defer func() { sparseFilesOp = registerFiles2 }()
			}
			testSlots(t)
		})
	}
}

func testSlots(t *testing.T) {
	r := registeredRing(t, 2)
	p := newPairs(t, 3, true)
	s0, err := r.Register(p.fds[0])
	if err != nil {
		t.Fatal(err)
	}
	s1, err := r.Register(p.fds[1])
	if err != nil {
		t.Fatal(err)
	}
	if s0 == s1 {
		t.Fatalf("two sockets in slot %d", s0)
	}
	if _, err := r.Register(p.fds[2]); !errors.Is(err, ErrNoSlot) {
		t.Fatalf("a third socket in a table of 2: %v, want ErrNoSlot", err)
	}
	if n := r.FreeSlots(); n != 0 {
		t.Fatalf("%d free slots, want 0", n)
	}
	sendAll(t, r, fixed(r, s0, "zero"), plain(r, p.fds[2], "two"), fixed(r, s1, "one"))
	for i, want := range []string{"zero", "one", "two"} {
		if got := readN(t, p.r[i], len(want)); got != want {
			t.Fatalf("socket %d got %q, want %q", i, got, want)
		}
	}

	// The slot holds the socket: closing its descriptor neither ends the
	// connection nor stops the sends.
	p.w[0].Close()
	sendAll(t, r, fixed(r, s0, "more"))
	if got := readN(t, p.r[0], 4); got != "more" {
		t.Fatalf("after its descriptor closed the slot sent %q", got)
	}
	if err := r.Unregister(s0); err != nil {
		t.Fatal(err)
	}
	// The last reference gone, the socket closes: the peer sees the end.
	_ = p.r[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := p.r[0].Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after the slot was emptied the peer read %d bytes, %v; want EOF", n, err)
	}
	s2, err := r.Register(p.fds[2])
	if err != nil || s2 != s0 {
		t.Fatalf("registering into the freed slot: %d, %v; want slot %d", s2, err, s0)
	}
	sendAll(t, r, fixed(r, s2, "again"))
	if got := readN(t, p.r[2], 5); got != "again" {
		t.Fatalf("the reused slot sent %q", got)
	}
	if err := r.Unregister(99); err == nil {
		t.Fatal("emptied a slot outside the table")
	}
}

// Closing the ring lets go of every registered socket; a slot emptied
// afterwards (a viewer leaving after its flusher stopped) is no error, and
// nothing registers any more.
func TestCloseReleasesRegisteredFiles(t *testing.T) {
	r := registeredRing(t, 4)
	p := newPairs(t, 1, true)
	slot, err := r.Register(p.fds[0])
	if err != nil {
		t.Fatal(err)
	}
	p.w[0].Close()
	_ = p.r[0].SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := p.r[0].Read(make([]byte, 1)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("with the socket still registered the peer read %d bytes, %v; want nothing yet", n, err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	_ = p.r[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := p.r[0].Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after the ring closed the peer read %d bytes, %v; want EOF", n, err)
	}
	if err := r.Unregister(slot); err != nil {
		t.Fatalf("emptying a slot of a closed ring: %v", err)
	}
	if _, err := r.Register(p.fds[0]); err == nil {
		t.Fatal("a closed ring registered a file")
	}
}

// A ring the kernel gave no table has no slot to give: callers keep to
// plain descriptors.
func TestNoTableNoSlot(t *testing.T) {
	r := newRing(t)
	p := newPairs(t, 1, true)
	if _, err := r.Register(p.fds[0]); !errors.Is(err, ErrNoSlot) {
		t.Fatalf("registering without a table: %v, want ErrNoSlot", err)
	}
	if err := r.RegisterFiles(0); err == nil {
		t.Fatal("a table of no slots was made")
	}
}

// A batch of registered files in steady state allocates nothing either.
func TestSubmitFixedDoesNotAllocate(t *testing.T) {
	r := registeredRing(t, 32)
	p := newPairs(t, 20, true)
	p.drain(t)
	slots := make([]int, len(p.fds))
	for i, fd := range p.fds {
		var err error
		if slots[i], err = r.Register(fd); err != nil {
			t.Fatal(err)
		}
	}
	bufs := payload(2)
	allocs := testing.AllocsPerRun(100, func() {
		for _, s := range slots {
			r.AddFixed(s, bufs)
		}
		if err := r.Submit(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per batch", allocs)
	}
}
