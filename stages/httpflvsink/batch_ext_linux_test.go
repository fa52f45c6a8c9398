package httpflvsink_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
	"github.com/mediapipe/mediapipe/internal/uring"
	"github.com/mediapipe/mediapipe/stages/httpflvsink"
)

// ringHere says whether this system gives the sink io_uring batches.
func ringHere() bool {
	r, err := uring.New(8)
	if err != nil {
		return false
	}
	r.Close()
	return true
}

// TestManyViewersEveryTag: 60 viewers, chunked (HTTP/1.1) and not
// (HTTP/1.0), get every tag byte for byte, whether the flusher sends them
// in io_uring batches or a writev each.
func TestManyViewersEveryTag(t *testing.T) {
	const n = 60
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{}))
	for _, mode := range []string{"uring", "writev"} {
		for _, m := range flushModes[:2] {
			t.Run(mode+"/"+m.name, func(t *testing.T) {
				if mode == "writev" {
					httpflvsink.WithoutRing(t)
				} else if !ringHere() {
					t.Skip("no io_uring here")
				}
				batches := httpflvsink.BatchesSent()
				s := startSink(t, httpflvsink.Config{GOPCache: true, FlushInterval: m.interval, FlushBytes: m.bytes})
				st := s.h.StartStream("live/many")
				s.sync(t)
				bodies := make([]chan []byte, n)
				for i := range n {
					proto := []string{"1.1", "1.0"}[i%2]
					_, br := rawGet(t, s.base, "/live/many.flv", proto)
					bodies[i] = make(chan []byte, 1)
					go func() {
						b, _ := io.ReadAll(br)
						bodies[i] <- b
					}()
				}
				testrun.Eventually(t, testrun.WaitLimit, "every viewer to join", func() bool { return s.viewers() == n })
				total := 0
				for _, tag := range tags {
					s.send(st, tag)
					total += len(tag) + 4
				}
				// The flusher's to send (the end would hand each
				// viewer's queue to its own goroutine).
				testrun.Eventually(t, testrun.WaitLimit, "the flusher to send the tags", func() bool {
					return core.CounterValue(s.env.Metrics.Counter("bytes_sent")) >= float64(n*total)
				})
				s.h.EndStream(st)
				for i := range n {
					body := testrun.Within(t, bodies[i], testrun.WaitLimit, "a viewer's body")
					if i%2 == 0 {
						body, _ = readChunks(t, bufio.NewReader(bytes.NewReader(body)))
					}
					got, err := flv.ReadAll(bufio.NewReader(bytes.NewReader(body)))
					if err != nil {
						t.Fatalf("viewer %d: %v", i, err)
					}
					sameTags(t, got, tags)
				}
				if sent := httpflvsink.BatchesSent() - batches; mode == "uring" && sent == 0 {
					t.Fatal("no io_uring batch was sent")
				}
			})
		}
	}
}

// TestShedAndCloseWhileFlushing: while batches go out, viewers are shed
// (they stop reading), hang up, and new connections take the descriptor
// numbers they free. No byte may reach a connection the sink does not serve,
// and every viewer that reads gets whole, consecutive tags.
func TestShedAndCloseWhileFlushing(t *testing.T) {
	for _, mode := range []string{"uring", "writev"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "writev" {
				httpflvsink.WithoutRing(t)
			}
			testShedAndClose(t)
		})
	}
}

func testShedAndClose(t *testing.T) {
	s := startSink(t, httpflvsink.Config{ViewerQueue: 64, WriteTimeout: time.Second, FlushInterval: 2 * time.Millisecond, FlushBytes: 4 << 10})
	st := s.h.StartStream("live/churn")
	// The churn tags are codec-less: an init known to be empty lets
	// viewers start at once instead of waiting for sequence headers.
	st.SetInit(&core.InitTags{})
	s.sync(t)
	addr := s.base[len("http://"):]
	bl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer bl.Close()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	type reader struct {
		body []byte
		err  error
	}
	readers := make(chan reader, 1000)
	// Viewers come and go: a third read to the end, a third hang up after
	// a while, a third stop reading and are shed.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			fmt.Fprintf(c, "GET /live/churn.flv HTTP/1.0\r\nHost: x\r\n\r\n")
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(testrun.WaitLimit))
				switch i % 3 {
				case 0:
					b, err := io.ReadAll(c)
					readers <- reader{b, err}
				case 1:
					_, _ = io.CopyN(io.Discard, c, int64(rand.IntN(64<<10)))
					if i%2 == 0 {
						_ = c.(*net.TCPConn).SetLinger(0) // a reset
					}
				default:
					<-stop // never reads
				}
			}()
		}
	}()
	// Bystanders: connection pairs the sink knows nothing of, made all
	// along so that they take freed descriptor numbers.
	var bystanders []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for len(bystanders) < 600 {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			c, err := net.Dial("tcp", bl.Addr().String())
			if err != nil {
				t.Error(err)
				return
			}
			a, err := bl.Accept()
			if err != nil {
				t.Error(err)
				return
			}
			bystanders = append(bystanders, c, a)
		}
	}()

	end := time.Now().Add(1500 * time.Millisecond)
	for i := uint32(0); time.Now().Before(end); i++ {
		s.send(st, churnTag(i))
		time.Sleep(100 * time.Microsecond) // a stream's pace, not a wait for anything
	}
	s.h.EndStream(st)
	close(stop)
	wg.Wait()
	close(readers)

	full := 0
	for r := range readers {
		if n := checkChurnBody(t, r.body); n > 200 {
			full++
		}
	}
	if full == 0 {
		t.Fatal("no viewer read more than 200 tags")
	}
	for _, c := range bystanders {
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		if n, _ := c.Read(make([]byte, 1)); n > 0 {
			t.Fatal("bytes reached a connection the sink does not serve")
		}
		c.Close()
	}
	if shed := s.env.Metrics.Drop("slow_viewer").Value(); shed == 0 {
		t.Fatal("no viewer was shed")
	}
}

// churnTag is tag i of the churn test: an audio tag whose data starts
// with i and whose length varies with it.
func churnTag(i uint32) []byte {
	data := make([]byte, 4+int(i*37%2000))
	binary.BigEndian.PutUint32(data, i)
	for j := 4; j < len(data); j++ {
		data[j] = byte(i) ^ byte(j)
	}
	return flv.AppendTag(nil, flv.TypeAudio, i, data)
}

// checkChurnBody checks an HTTP/1.0 response of the churn test: the head,
// the FLV header, then whole consecutive churn tags (a cut viewer's last
// one may be partial). It returns how many.
func checkChurnBody(t *testing.T, body []byte) int {
	t.Helper()
	if len(body) == 0 || bytes.HasPrefix(body, []byte("HTTP/1.1 404")) || bytes.HasPrefix(body, []byte("HTTP/1.0 404")) {
		return 0 // reset before it read a byte (the reset drops what the socket held), or came after the end
	}
	i := bytes.Index(body, []byte("\r\n\r\n"))
	if i < 0 || !bytes.HasPrefix(body, []byte("HTTP/1.1 200 OK\r\n")) {
		t.Fatalf("no response head in %q", body[:min(len(body), 100)])
	}
	body = body[i+4:]
	if len(body) < 13 {
		return 0
	}
	body = body[13:]
	n, next := 0, uint32(0)
	for len(body) >= flv.HeaderSize+4 {
		data := body[flv.HeaderSize:]
		first := binary.BigEndian.Uint32(data)
		if n == 0 {
			next = first
		}
		want := append(churnTag(next), 0, 0, 0, 0)
		binary.BigEndian.PutUint32(want[len(want)-4:], uint32(len(want)-4))
		if len(body) < len(want) {
			if !bytes.HasPrefix(want, body) {
				t.Fatalf("after %d tags: the partial last tag is not tag %d", n, next)
			}
			break
		}
		if !bytes.Equal(body[:len(want)], want) {
			t.Fatalf("after %d tags: not tag %d (got index %d)", n, next, first)
		}
		body = body[len(want):]
		n++
		next++
	}
	return n
}

// TestNoRingFallsBack: where io_uring is refused, the sink says so once in
// its log and serves viewers with a writev each.
func TestNoRingFallsBack(t *testing.T) {
	httpflvsink.WithoutRing(t)
	logs := &testrun.LogBuffer{}
	env := core.TestEnv("httpflv-sink")
	env.Log = slog.New(slog.NewTextHandler(logs, nil))
	stage, err := httpflvsink.New(&httpflvsink.Config{Listen: "127.0.0.1:0", ViewerQueue: 1024, WriteTimeout: 10 * time.Second, FlushInterval: 10 * time.Millisecond, FlushBytes: 32 << 10}, env)
	if err != nil {
		t.Fatal(err)
	}
	h := stagetest.Start(t, stage, env, false)
	base := "http://" + stage.(*httpflvsink.Stage).Addr().String()
	st := h.StartStream("live/plain")
	testrun.Eventually(t, testrun.WaitLimit, "the stream served", func() bool { return testrun.Head(base+"/live/plain.flv") == 200 })
	_, br := rawGet(t, base, "/live/plain.flv", "1.0")
	body := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(br)
		body <- b
	}()
	testrun.Eventually(t, testrun.WaitLimit, "the viewer to join", func() bool { return core.GaugeValue(env.Metrics.Gauge("viewers")) == 1 })
	var want [][]byte
	for i := range uint32(100) {
		tag := churnTag(i)
		hdr, _ := flv.ParseHeader(tag)
		h.SendData(st, hdr.Type, hdr.Timestamp, tag)
		want = append(want, tag)
	}
	h.EndStream(st)
	got := testrun.Within(t, body, testrun.WaitLimit, "the viewer's body")
	tags, err := flv.ReadAll(bufio.NewReader(bytes.NewReader(got)))
	if err != nil {
		t.Fatal(err)
	}
	sameTags(t, tags, want)
	if n := strings.Count(logs.String(), "no io_uring"); n != 1 {
		t.Fatalf("the fallback logged %d times, want once:\n%s", n, logs.String())
	}
}
