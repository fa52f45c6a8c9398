package httpflvsink_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/internal/testmedia"
)

// Every wait in these tests is bounded, so a misbehaving ffmpeg or a stuck
// stage fails the test instead of hanging the package until go test's timeout.
const (
	waitLimit   = 30 * time.Second // one condition (generous: CI boxes are loaded)
	ffmpegLimit = 90 * time.Second // one ffmpeg run, start to exit
)

// httpc is every request's client: a response, body included, ends in time.
var httpc = &http.Client{Timeout: ffmpegLimit}

// head is a HEAD request's status, 0 on error.
func head(url string) int {
	c := &http.Client{Timeout: 5 * time.Second}
	r, err := c.Head(url)
	if err != nil {
		return 0
	}
	r.Body.Close()
	return r.StatusCode
}

// within receives from ch or fails the test after d.
func within[T any](t testing.TB, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("timed out after %v waiting for %s", d, what)
		panic("unreachable")
	}
}

// testCtx ends when the test does, or after d.
func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// ffmpegResult is one ffmpeg viewer's framemd5 and how it ended.
type ffmpegResult struct {
	frames []testmedia.Frame
	stderr string
	err    error
}

// viewFFmpeg runs an ffmpeg viewer of url in the background: killed at
// ffmpegLimit, and its reads time out if the socket goes quiet.
func viewFFmpeg(t testing.TB, url string) <-chan ffmpegResult {
	t.Helper()
	ctx := testCtx(t, ffmpegLimit)
	done := make(chan ffmpegResult, 1)
	go func() {
		f, e, err := testmedia.FrameMD5Err(ctx, url, "-rw_timeout", "20000000", "-copyts")
		done <- ffmpegResult{f, e, err}
	}()
	return done
}

// heldProxy forwards one TCP connection to target, but only after release is
// called: a viewer process can connect early (its start-up time under load
// does not matter) and join the stream exactly when the test says.
type heldProxy struct {
	addr     string
	accepted chan struct{} // closed when the client has connected
	release  func()
}

func newHeldProxy(t testing.TB, target string) *heldProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	released := make(chan struct{})
	p := &heldProxy{addr: ln.Addr().String(), accepted: make(chan struct{})}
	var once sync.Once
	p.release = func() { once.Do(func() { close(released) }) }
	var (
		mu     sync.Mutex
		closed bool
		conns  []net.Conn
		wg     sync.WaitGroup
	)
	keep := func(c net.Conn) bool { // false once the test is over
		mu.Lock()
		defer mu.Unlock()
		if closed {
			c.Close()
			return false
		}
		conns = append(conns, c)
		return true
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		ln.Close()
		if err != nil || !keep(c) {
			return
		}
		close(p.accepted)
		<-released
		up, err := net.DialTimeout("tcp", target, 5*time.Second)
		if err != nil {
			c.Close()
			return
		}
		if !keep(up) {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = io.Copy(up, c)
			_ = up.(*net.TCPConn).CloseWrite()
		}()
		_, _ = io.Copy(c, up)
		c.Close()
	}()
	t.Cleanup(func() {
		mu.Lock()
		closed = true
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		p.release()
		ln.Close()
		wg.Wait() // bounded: every socket is closed
	})
	return p
}
