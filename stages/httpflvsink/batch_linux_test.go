package httpflvsink

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/internal/testrun"
	"github.com/mediapipe/mediapipe/internal/uring"
)

// TestFlushDoesNotAllocate: a flush of many viewers, batched or a writev
// each, allocates nothing per viewer or per flush once warm; and every
// viewer is written by the flusher, none left behind.
func TestFlushDoesNotAllocate(t *testing.T) {
	if raceOn {
		t.Skip("sync.Pool drops items under -race")
	}
	for _, mode := range []string{"uring", "uring-dup", "writev"} {
		t.Run(mode, func(t *testing.T) {
			switch mode {
			case "uring-dup":
				withoutFileTable(t)
			case "writev":
				newRing = refuseRing
				defer func() { newRing = uring.New }()
			}
			tf := newTestFlusher(t)
			if mode != "writev" && tf.f.ring == nil {
				t.Skip("no io_uring here")
			}
			vs := loopViewers(t, tf.st, 64)
			tag := tf.tag
			sts := []*stream{tf.st}
			send := func() {
				tf.push()
				tf.f.flushStreams(sts, time.Now())
			}
			for range 20 {
				send()
			}
			if allocs := testing.AllocsPerRun(200, send); allocs != 0 {
				t.Fatalf("a flush of %d viewers allocates %v times", len(vs), allocs)
			}
			want := int64(221) * int64(len(tag)+4)
			for i, v := range vs {
				v.mu.Lock()
				owner, written := v.owner, v.written
				v.mu.Unlock()
				if owner != ownIdle || written != want {
					t.Fatalf("viewer %d: owner %d, %d bytes written, want idle and %d", i, owner, written, want)
				}
			}
		})
	}
}

// loopViewers adds n viewers on loopback connections to st, idle (the
// flusher's to write), half of them chunked, each drained by a reader.
func loopViewers(t *testing.T, st *stream, n int) []*viewer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var vs []*viewer
	for i := range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		srv, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = io.Copy(io.Discard, c)
		}()
		rc, err := srv.(syscall.Conn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		v := &viewer{conn: srv, tcp: srv, raw: rc, st: st, wake: make(chan struct{}, 1), owner: ownIdle, chunked: i%2 == 0}
		v.probe.rc = rc
		t.Cleanup(func() {
			v.mu.Lock()
			sock := v.takeSock()
			v.mu.Unlock()
			sock.release()
			srv.Close()
			c.Close()
			<-done
		})
		vs = append(vs, v)
	}
	st.mu.Lock()
	st.viewers = append(st.viewers, vs...)
	st.mu.Unlock()
	return vs
}

// testFlusher is a stage's stream and a flusher driven by the test, with
// no Run: the test pushes and flushes.
type testFlusher struct {
	s   *Stage
	cs  *core.Stream
	st  *stream
	f   *flusher
	tag []byte
}

func newTestFlusher(t *testing.T) *testFlusher {
	t.Helper()
	return newTestFlusherLog(t, nil)
}

// newTestFlusherLog is newTestFlusher logging to logs, if not nil.
func newTestFlusherLog(t *testing.T, logs io.Writer) *testFlusher {
	t.Helper()
	cfg := Config{Listen: "127.0.0.1:0", ViewerQueue: 1024, WriteTimeout: 10 * time.Second, FlushBytes: 32 << 10, FlushInterval: 10 * time.Millisecond}
	env := core.TestEnv("httpflv-sink")
	if logs != nil {
		env.Log = slog.New(slog.NewTextHandler(logs, nil))
	}
	stage, err := New(&cfg, env)
	if err != nil {
		t.Fatal(err)
	}
	tf := &testFlusher{s: stage.(*Stage), cs: core.NewStream("live/a")}
	tf.s.start(tf.cs)
	tf.st = tf.s.streams[tf.cs]
	tf.f = newFlusher(tf.s)
	t.Cleanup(tf.f.close)
	tf.tag = flv.AppendTag(nil, flv.TypeAudio, 0, bytes.Repeat([]byte{0xaf, 1}, 600))
	return tf
}

// push queues one tag to every viewer.
func (tf *testFlusher) push() {
	p := core.NewPacket(len(tf.tag))
	copy(p.Data, tf.tag)
	p.Stream, p.Type = tf.cs, flv.TypeAudio
	tf.s.data(p)
}

// TestBatchOutlivesClose: a viewer shed while it is in the flusher's batch
// has its connection closed (abort, as push does) and the descriptor number
// taken by a new connection before the batch goes out. The batch must still
// write to the viewer's socket, never to the newcomer.
// It holds for both of the flusher's references to a socket: a registered
// file's slot, and (the kernel refusing the table) a duplicate descriptor.
func TestBatchOutlivesClose(t *testing.T) {
	for _, mode := range []struct {
		name string
		st   uint8
	}{{"slot", sockSlot}, {"dup", sockOpen}} {
		t.Run(mode.name, func(t *testing.T) {
			if mode.st == sockOpen {
				withoutFileTable(t)
			}
			testBatchOutlivesClose(t, mode.st)
		})
	}
}

func testBatchOutlivesClose(t *testing.T, sockSt uint8) {
	tf := newTestFlusher(t)
	if tf.f.ring == nil {
		t.Skip("no io_uring here")
	}
	if sockSt == sockSlot && !tf.f.fixed {
		t.Skip("no registered files here")
	}
	v := loopViewers(t, tf.st, 1)[0]
	tf.push()
	tf.f.flush(v, time.Now())
	if len(tf.f.batch) != 1 {
		t.Fatalf("%d viewers in the batch, want 1", len(tf.f.batch))
	}
	if v.sockSt != sockSt {
		t.Fatalf("the flusher's reference to the socket is of kind %d, want %d", v.sockSt, sockSt)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var old int
	_ = v.raw.Control(func(fd uintptr) { old = int(fd) })
	v.mu.Lock()
	v.dead = true
	v.mu.Unlock()
	abort(v.conn)

	var news []net.Conn
	reused := false
	// The freed number goes to the next descriptor made, unless lower ones
	// were freed meanwhile (another test's connections ending).
	for i := 0; i < 64 && !reused; i++ {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		a, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		defer a.Close()
		news = append(news, c, a)
		for _, n := range []net.Conn{c, a} {
			rc, _ := n.(syscall.Conn).SyscallConn()
			_ = rc.Control(func(fd uintptr) { reused = reused || int(fd) == old })
		}
	}
	if !reused {
		t.Fatal("no new connection took the closed descriptor's number")
	}
	tf.f.sendBatch()
	for _, c := range news {
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if n, _ := c.Read(make([]byte, 1)); n > 0 {
			t.Fatal("the batch wrote to a connection that took the closed viewer's descriptor number")
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.owner != ownIdle || len(v.out) != 0 {
		t.Fatalf("after the batch the shed viewer is owned by %d with %d tags out", v.owner, len(v.out))
	}
}

// withoutFileTable makes flushers set up until the test ends find their
// kernel refusing registered files, as one before 5.5 does.
func withoutFileTable(t *testing.T) {
	registerFiles = func(*uring.Ring, int) error { return fmt.Errorf("refused by the test: %w", syscall.EINVAL) }
	t.Cleanup(func() { registerFiles = (*uring.Ring).RegisterFiles })
}

// slotted is how many slots of the flusher's table are taken.
func (tf *testFlusher) slotted() int { return fileSlots - tf.f.ring.FreeSlots() }

// A viewer's slot: taken the first time the flusher sends to it, emptied
// when it leaves idle, and when it leaves while in a batch only once the
// batch is sent (the send still reaching it); then taken by the next.
func TestViewerSlotLifecycle(t *testing.T) {
	tf := newTestFlusher(t)
	if tf.f.ring == nil || !tf.f.fixed {
		t.Skip("no io_uring with registered files here")
	}
	vs := loopViewers(t, tf.st, 3)
	if n := tf.slotted(); n != 0 {
		t.Fatalf("%d slots taken before any flush", n)
	}
	tf.push()
	tf.f.flushStreams([]*stream{tf.st}, time.Now())
	for i, v := range vs {
		if v.sockSt != sockSlot {
			t.Fatalf("viewer %d: reference of kind %d, want a slot", i, v.sockSt)
		}
	}
	if n := tf.slotted(); n != 3 {
		t.Fatalf("%d slots taken by 3 viewers", n)
	}

	// Leaving while idle empties the slot at once.
	tf.s.viewerLeft(tf.st, vs[0], "", nil)
	if n := tf.slotted(); n != 2 {
		t.Fatalf("%d slots taken after a viewer left, want 2", n)
	}

	// Leaving while in the batch leaves the slot to the flusher.
	tf.push()
	v := vs[1]
	tf.f.flush(v, time.Now())
	if len(tf.f.batch) != 1 {
		t.Fatalf("%d viewers in the batch, want 1", len(tf.f.batch))
	}
	v.mu.Lock()
	before := v.written
	v.mu.Unlock()
	tf.s.viewerLeft(tf.st, v, "", nil)
	if n := tf.slotted(); n != 2 {
		t.Fatalf("%d slots taken while the leaving viewer is in the batch, want 2", n)
	}
	tf.f.sendBatch()
	if n := tf.slotted(); n != 1 {
		t.Fatalf("%d slots taken after the batch, want 1", n)
	}
	v.mu.Lock()
	after, st := v.written, v.sockSt
	v.mu.Unlock()
	if after == before || st != sockFailed {
		t.Fatalf("the batch wrote %d bytes to the leaving viewer, its reference of kind %d", after-before, st)
	}

	// A newcomer takes a free slot.
	nv := loopViewers(t, tf.st, 1)[0]
	tf.push()
	tf.f.flushStreams([]*stream{tf.st}, time.Now())
	if nv.sockSt != sockSlot || tf.slotted() != 2 {
		t.Fatalf("the newcomer's reference is of kind %d, %d slots taken; want a slot, 2", nv.sockSt, tf.slotted())
	}
}

// With every slot taken, the next viewers are sent on a duplicate
// descriptor each, counted, and said once in the log; every viewer gets
// every byte either way.
func TestSlotsFullFallsBack(t *testing.T) {
	registerFiles = func(r *uring.Ring, _ int) error { return r.RegisterFiles(2) }
	t.Cleanup(func() { registerFiles = (*uring.Ring).RegisterFiles })
	logs := &testrun.LogBuffer{}
	tf := newTestFlusherLog(t, logs)
	if tf.f.ring == nil || !tf.f.fixed {
		t.Skip("no io_uring with registered files here")
	}
	vs := loopViewers(t, tf.st, 5)
	fell := noSlot.Load()
	const rounds = 10
	for range rounds {
		tf.push()
		tf.f.flushStreams([]*stream{tf.st}, time.Now())
	}
	slots := 0
	for i, v := range vs {
		v.mu.Lock()
		st, written, owner := v.sockSt, v.written, v.owner
		v.mu.Unlock()
		switch st {
		case sockSlot:
			slots++
		case sockOpen:
		default:
			t.Fatalf("viewer %d: reference of kind %d, want a slot or a duplicate", i, st)
		}
		if want := int64(rounds) * int64(len(tf.tag)+4); owner != ownIdle || written != want {
			t.Fatalf("viewer %d: owner %d, %d bytes written, want idle and %d", i, owner, written, want)
		}
	}
	if slots != 2 {
		t.Fatalf("%d viewers in slots of a table of 2", slots)
	}
	if n := noSlot.Load() - fell; n != 3 {
		t.Fatalf("%d viewers counted as finding no slot, want 3", n)
	}
	if n := strings.Count(logs.String(), "every registered file slot is taken"); n != 1 {
		t.Fatalf("a full table logged %d times, want once:\n%s", n, logs.String())
	}
}

// Where the kernel refuses registered files, the flusher says so once and
// sends on duplicate descriptors.
func TestFileTableRefusedFallsBack(t *testing.T) {
	withoutFileTable(t)
	logs := &testrun.LogBuffer{}
	tf := newTestFlusherLog(t, logs)
	if tf.f.ring == nil {
		t.Skip("no io_uring here")
	}
	vs := loopViewers(t, tf.st, 3)
	tf.push()
	tf.f.flushStreams([]*stream{tf.st}, time.Now())
	for i, v := range vs {
		v.mu.Lock()
		st, written := v.sockSt, v.written
		v.mu.Unlock()
		if st != sockOpen || written != int64(len(tf.tag)+4) {
			t.Fatalf("viewer %d: reference of kind %d, %d bytes written; want a duplicate, %d", i, st, written, len(tf.tag)+4)
		}
	}
	if n := strings.Count(logs.String(), "refused registered files"); n != 1 {
		t.Fatalf("the refusal logged %d times, want once:\n%s", n, logs.String())
	}
}
