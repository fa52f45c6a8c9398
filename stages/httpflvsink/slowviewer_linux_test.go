package httpflvsink_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/internal/testcert"
	"github.com/mediapipe/mediapipe/internal/testrun"
	"github.com/mediapipe/mediapipe/stages/httpflvsink"
)

// TestSlowReadersShed is issue 11's attack 3: viewers that read one byte a
// second, nothing, or 40 kB/s of a 100 kB/s live stream. The kernel took
// everything written to them into send buffers it grew to megabytes, so
// write never blocked and none was ever shed. Now each is shed within about
// write_timeout of falling behind (the trickle, whose socket takes a little
// now and then, by how far behind live it is), its send queue stays within
// its small send buffer, and a healthy viewer of the same stream gets every
// tag.
func TestSlowReadersShed(t *testing.T) {
	const (
		slow         = 50
		writeTimeout = 2 * time.Second
		// Falling behind takes about a second of the stream (the send
		// buffer); the rest is scheduling on a loaded box.
		slack = 3 * time.Second
		// The stream: 4000-byte video tags every 40 ms, about 100 kB/s
		// (0.8 Mbit/s), a keyframe a second.
		tagBytes = 4000
		every    = 40 * time.Millisecond
		// A viewer's send buffer is a second of this stream (100 kB);
		// Linux lets a socket queue twice that, plus the segment being built.
		maxQueued = 2*100_000 + 64<<10
	)
	s := startSink(t, httpflvsink.Config{GOPCache: true, WriteTimeout: writeTimeout, FlushInterval: 10 * time.Millisecond})
	st := s.h.StartStream("live/slow")
	s.sync(t)
	addr := s.base[len("http://"):]

	good := testrun.Watch(s.base + "/live/slow.flv")
	testrun.Eventually(t, testrun.WaitLimit, "the healthy viewer", func() bool { return s.viewers() == 1 })

	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	stop := make(chan struct{})
	var readers sync.WaitGroup
	t.Cleanup(func() {
		close(stop)
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		readers.Wait()
	})
	join := func() {
		for i := 0; i < slow; i++ {
			c, err := dialSmallWindow(addr)
			if err != nil {
				t.Errorf("slow viewer %d: %v", i, err)
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			fmt.Fprintf(c, "GET /live/slow.flv HTTP/1.1\r\nHost: x\r\n\r\n")
			if i%3 == 1 {
				continue // never reads
			}
			size, pause := 1, time.Second // one byte a second
			if i%3 == 2 {
				size, pause = 4000, 100*time.Millisecond // 40 kB/s
			}
			readers.Add(1)
			go func() {
				defer readers.Done()
				b := make([]byte, size)
				for {
					_ = c.SetReadDeadline(time.Now().Add(testrun.WaitLimit))
					if _, err := c.Read(b); err != nil {
						return
					}
					select {
					case <-stop:
						return
					case <-time.After(pause):
					}
				}
			}()
		}
	}

	before := tcpMemPages(t)
	var (
		sent                [][]byte
		joinedAt, shedAt    time.Time
		peakOne, peakAll    int
		peakMem             = before
		body                = bytes.Repeat([]byte{0x27, 1, 0, 0, 0}, tagBytes/5)
		tick                = time.NewTicker(every)
		started             = time.Now()
		joining, afterShed  = false, 0
		slowShed, liveCount = func() float64 { return s.env.Metrics.Drop("slow_viewer").Value() }, s.viewers
	)
	defer tick.Stop()
	for i := 0; ; i++ { // a live stream: one tag per tick
		b := append([]byte(nil), body...)
		b[5], b[6] = byte(i), byte(i>>8)
		if i%25 == 0 {
			b[0] = 0x17
		}
		tag := flv.AppendTag(nil, flv.TypeVideo, uint32(i*40), b)
		sent = append(sent, tag)
		s.send(st, tag)
		switch {
		case i == 30 && !joining: // once the sink has seen a second of the stream
			joining = true
			go join()
		case joining && joinedAt.IsZero() && liveCount() == slow+1:
			joinedAt = time.Now()
		}
		if i%5 == 0 {
			q := httpflvsink.KernelQueued(s.stage)
			sum := 0
			for _, n := range q {
				sum += n
				peakOne = max(peakOne, n)
			}
			peakAll = max(peakAll, sum)
			peakMem = max(peakMem, tcpMemPages(t))
		}
		if !joinedAt.IsZero() && shedAt.IsZero() && slowShed() == slow && liveCount() == 1 {
			shedAt = time.Now()
		}
		if !shedAt.IsZero() {
			if afterShed++; afterShed == 25 { // and a second more for the healthy viewer
				break
			}
		}
		if !joinedAt.IsZero() && shedAt.IsZero() && time.Since(joinedAt) > writeTimeout+slack {
			t.Errorf("after %v, %v of %d slow viewers shed (%v still connected); write_timeout is %v",
				time.Since(joinedAt).Round(time.Millisecond), slowShed(), slow, liveCount()-1, writeTimeout)
			break
		}
		if time.Since(started) > 20*time.Second {
			t.Fatalf("the slow viewers never all joined (%v connected)", liveCount())
		}
		<-tick.C
	}
	s.h.EndStream(st)
	got := good.Wait(t, testrun.WaitLimit)
	if err := good.Err(); err != nil {
		t.Errorf("the healthy viewer: %v", err)
	}
	sameTags(t, got, sent)

	page := os.Getpagesize()
	took := "never"
	if !shedAt.IsZero() {
		took = shedAt.Sub(joinedAt).Round(time.Millisecond).String()
	}
	t.Logf("%d slow viewers of a %d kB/s stream: all shed after %s (write_timeout %v); server send queues: peak %d kB on one socket, %d kB over all; kernel TCP memory (sockstat) %d kB before, peak %d kB (+%d kB)",
		slow, tagBytes*int(time.Second/every)/1000, took, writeTimeout,
		peakOne/1000, peakAll/1000, before*page/1000, peakMem*page/1000, (peakMem-before)*page/1000)
	if peakOne > maxQueued {
		t.Errorf("one slow viewer's socket held %d bytes; want at most %d", peakOne, maxQueued)
	}
	if n := s.env.Metrics.Drop("viewer_gone").Value(); n != 0 {
		t.Errorf("viewer_gone = %v, want 0: the slow viewers were shed, not gone", n)
	}
}

// dialSmallWindow connects with a 4 KiB receive buffer set before the
// handshake, so the window it offers stays small, as a slow player's does.
func dialSmallWindow(addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096) }); err != nil {
			return err
		}
		return serr
	}}
	return d.Dial("tcp", addr)
}

// tcpMemPages is the kernel's TCP memory in pages, all sockets of this
// network namespace (the "mem" of /proc/net/sockstat's TCP line).
func tcpMemPages(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "TCP:" {
			continue
		}
		for i := 1; i+1 < len(f); i += 2 {
			if f[i] == "mem" {
				n, err := strconv.Atoi(f[i+1])
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
		}
	}
	t.Fatal("no TCP mem in /proc/net/sockstat")
	return 0
}

// TestBacklogCountsOnlyUnsent: a viewer's queue (what viewer_queue bounds,
// and the control API shows) counts the tags not yet sent, not those its
// goroutine's write in progress has already delivered. A viewer that fell
// 15 tags behind and read back to 4 behind while its goroutine still
// wrote one long backlog was counted 13 behind until that write ended, so
// one that then fell behind again by less than viewer_queue was cut as
// slow: the TLS viewer of TestHTTPSStalledViewerShed on a busy CPU.
func TestBacklogCountsOnlyUnsent(t *testing.T) {
	const (
		queue  = 16 // the least viewer_queue
		behind = 15 // tags queued while the viewer does not read
		read   = 11 // tags it then reads
		more   = 10 // tags queued after: 14 behind at most, within queue
	)
	pair := testcert.NewCA(t).Issue(t, t.TempDir(), "edge")
	// write_timeout long: the lag check, which the stream's rate at
	// these few pushes would make strict, is not what is tested.
	cfg := httpflvsink.Config{ViewerQueue: queue, WriteTimeout: time.Minute, FlushInterval: 10 * time.Millisecond}
	for _, overTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "http", true: "https"}[overTLS], func(t *testing.T) {
			var (
				s      *sink
				served func(path string) bool
				conf   *tls.Config
			)
			if overTLS {
				ts := startTLSSink(t, cfg, pair)
				s, served, conf = ts.sink, func(p string) bool { return ts.head(p) == 200 }, ts.pool
			} else {
				s = startSink(t, cfg)
				served = func(p string) bool { return testrun.Head(s.base+p) == 200 }
			}
			st := s.h.StartStream("live/backlog")
			testrun.Eventually(t, testrun.WaitLimit, "the stream served", func() bool { return served("/live/backlog.flv") })
			// Run has handled what was sent before once a stream
			// started after it is served.
			sync := func(name string) {
				s.h.StartStream(name)
				testrun.Eventually(t, testrun.WaitLimit, "the sink to catch up", func() bool { return served("/" + name + ".flv") })
			}

			// A small receive window: the kernel holds little of the
			// backlog, the sink's goroutine holds the rest.
			var c net.Conn
			c, err := dialSmallWindow(strings.TrimPrefix(strings.TrimPrefix(s.base, "http://"), "https://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if overTLS {
				c = tls.Client(c, conf.Clone())
			}
			_ = c.SetDeadline(time.Now().Add(2 * testrun.WaitLimit))
			fmt.Fprintf(c, "GET /live/backlog.flv HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			// Closing the body of a response cut short would read it to
			// its end: the connection goes first.
			defer func() { c.Close(); resp.Body.Close() }()
			fr := flv.NewReader(bufio.NewReader(resp.Body))
			var got [][]byte
			readTags := func(n int) {
				t.Helper()
				for range n {
					tag, err := fr.Next()
					if err != nil {
						t.Fatalf("after %d tags: %v", len(got), err)
					}
					got = append(got, tag)
				}
			}
			testrun.Eventually(t, testrun.WaitLimit, "the viewer", func() bool { return s.viewers() == 1 })
			queued := func() int {
				l := s.env.Sessions.List(core.Viewer, "live/backlog")
				if len(l) != 1 {
					return -1
				}
				return l[0].Queue()
			}

			var sent [][]byte
			body := bytes.Repeat([]byte{0x27, 1, 0, 0, 0}, 64<<10/5)
			push := func(n int) {
				for range n {
					b := append([]byte(nil), body...)
					b[5] = byte(len(sent))
					tag := flv.AppendTag(nil, flv.TypeVideo, uint32(len(sent)*33), b)
					sent = append(sent, tag)
					s.send(st, tag)
				}
			}
			push(behind)
			sync("sync/1")
			readTags(read)
			// The viewer has every tag before the 11th: the sink has
			// sent them, so at most the rest, from the 11th on, counts.
			last := 0
			defer func() {
				if t.Failed() {
					t.Logf("the viewer's queue counted %d tags", last)
				}
			}()
			testrun.Eventually(t, testrun.WaitLimit, fmt.Sprintf("the queue to count only the %d tags not yet read", behind-read+1),
				func() bool { last = queued(); return last >= 0 && last <= behind-read+1 })
			push(more)
			sync("sync/2")
			if n := s.env.Metrics.Drop("slow_viewer").Value(); n != 0 {
				t.Fatalf("slow_viewer = %v: a viewer %d tags behind, with viewer_queue %d, was cut", n, behind-read+more, queue)
			}
			s.h.EndStream(st)
			for {
				tag, err := fr.Next()
				if err != nil {
					break
				}
				got = append(got, tag)
			}
			sameTags(t, got, sent)
		})
	}
}
