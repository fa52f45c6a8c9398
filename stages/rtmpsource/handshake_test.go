package rtmpsource_test

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/stages/rtmpsource"
)

// A client that trickles its handshake a byte at a time, each byte well
// within idle_timeout, is still closed once idle_timeout has passed since it
// connected: the handshake has one deadline, not one per read.
func TestTrickledHandshakeIsClosed(t *testing.T) {
	const idle = 500 * time.Millisecond
	s := startSource(t, rtmpsource.Config{IdleTimeout: idle})
	c, err := net.Dial("tcp", s.url[len("rtmp://"):])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		// C0 then C1, one byte every 50 ms: C0+C1 would take 77 s.
		for i := 0; ; i++ {
			b := byte(i)
			if i == 0 {
				b = 3
			}
			if _, err := c.Write([]byte{b}); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	t0 := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("a trickling client was kept open for 10 s (idle_timeout %s)", idle)
	}
	if d := time.Since(t0); d > idle+3*time.Second {
		t.Fatalf("closed after %s, idle_timeout is %s", d, idle)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.env.Metrics.Drop("idle_timeout").Value() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("idle_timeout not counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A connection that finishes the RTMP handshake but never publishes is
// closed by the same deadline.
func TestHandshakenButNoPublishIsClosed(t *testing.T) {
	s := startSource(t, rtmpsource.Config{IdleTimeout: 500 * time.Millisecond})
	c := handshaken(t, s.url[len("rtmp://"):])
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		// Keep sending something valid-looking (set-chunk-size messages)
		// more often than idle_timeout.
		msg := []byte{0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0x10, 0}
		for {
			if _, err := c.Write(msg); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	t0 := time.Now()
	expectClosed(t, c)
	if d := time.Since(t0); d > 3*time.Second {
		t.Fatalf("closed after %s", d)
	}
}

// A stream name that RTCP SDES cannot carry would never be announced to an
// edge: its publish is refused (ffmpeg fails) and counted; one at the limit
// (255 bytes) is accepted.
func TestUnannounceableNameRefused(t *testing.T) {
	testmedia.NeedFFmpeg(t)
	clip := testmedia.Clip(t, testmedia.Options{Seconds: 1})
	s := startSource(t, rtmpsource.Config{})
	long := strings.Repeat("k", 300)
	cmd := push(t, s.url+"/live/"+long, clip, false)
	if err := cmd.Wait(); err == nil {
		t.Fatal("a 305-byte stream name was accepted")
	}
	if v := s.env.Metrics.Drop("publish_refused").Value(); v != 1 {
		t.Fatalf("publish_refused = %v, want 1", v)
	}
	if n := len(s.h.Out.Packets()); n != 0 {
		t.Fatalf("refused publisher produced %d packets", n)
	}
	limit := strings.Repeat("k", 255-len("live/"))
	cmd = push(t, s.url+"/live/"+limit, clip, false)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("a 255-byte name was refused: %v\n%s", err, testmedia.Stderr(cmd))
	}
	waitEnd(t, s, "live/"+limit, 5*time.Second)
}
