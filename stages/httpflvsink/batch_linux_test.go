package httpflvsink

import (
	"bytes"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/internal/uring"
)

// TestFlushDoesNotAllocate: a flush of many viewers, batched or a writev
// each, allocates nothing per viewer or per flush once warm; and every
// viewer is written by the flusher, none left behind.
func TestFlushDoesNotAllocate(t *testing.T) {
	if raceOn {
		t.Skip("sync.Pool drops items under -race")
	}
	for _, mode := range []string{"uring", "writev"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "writev" {
				newRing = refuseRing
				defer func() { newRing = uring.New }()
			}
			tf := newTestFlusher(t)
			if mode == "uring" && tf.f.ring == nil {
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
			closeSock(sock)
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
	cfg := Config{Listen: "127.0.0.1:0", ViewerQueue: 1024, WriteTimeout: 10 * time.Second, FlushBytes: 32 << 10, FlushInterval: 10 * time.Millisecond}
	stage, err := New(&cfg, core.TestEnv("httpflv-sink"))
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
func TestBatchOutlivesClose(t *testing.T) {
	tf := newTestFlusher(t)
	if tf.f.ring == nil {
		t.Skip("no io_uring here")
	}
	v := loopViewers(t, tf.st, 1)[0]
	tf.push()
	tf.f.flush(v, time.Now())
	if len(tf.f.batch) != 1 {
		t.Fatalf("%d viewers in the batch, want 1", len(tf.f.batch))
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
