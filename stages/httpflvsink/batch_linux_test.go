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
				noRing = true
				defer func() { noRing = false }()
			}
			cfg := Config{Listen: "127.0.0.1:0", ViewerQueue: 1024, WriteTimeout: 10 * time.Second, FlushBytes: 32 << 10, FlushInterval: 10 * time.Millisecond}
			cs, err := New(&cfg, core.TestEnv("httpflv-sink"))
			if err != nil {
				t.Fatal(err)
			}
			s := cs.(*Stage)
			stream := core.NewStream("live/a")
			s.start(stream)
			st := s.streams[stream]
			f := newFlusher(s)
			defer f.close()
			if mode == "uring" && f.ring == nil {
				t.Skip("no io_uring here")
			}
			vs := loopViewers(t, st, 64)
			tag := flv.AppendTag(nil, flv.TypeAudio, 0, bytes.Repeat([]byte{0xaf, 1}, 600))
			send := func() {
				p := core.NewPacket(len(tag))
				copy(p.Data, tag)
				p.Stream, p.Type = stream, flv.TypeAudio
				s.data(p)
				f.flushAll(time.Now())
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
		v := &viewer{conn: srv, raw: rc, st: st, wake: make(chan struct{}, 1), owner: ownIdle, chunked: i%2 == 0}
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
