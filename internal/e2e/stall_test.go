//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// dialStalled opens a viewer connection whose kernel buffers are as small as
// a slow link's: a tiny receive buffer, and a small MSS, because Linux sizes
// the server's send buffer from the MSS: with loopback's 64 KB one it
// swallows this whole 400 KB clip and the sink never meets a full socket
// (checked: with an MSS of 32000 the test fails). It sends the GET and never
// reads. (Linux-only: TCP_MAXSEG before connect.)
func dialStalled(t *testing.T, addr, path string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			if serr == nil {
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, 536)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("stalled viewer: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: stalled-viewer\r\n\r\n", path, addr); err != nil {
		t.Fatalf("stalled viewer: %v", err)
	}
	return c
}

// TestStalledViewer: of two viewers of one relayed stream, one stops reading
// (a player whose link died without a reset): the edge cuts it within
// write_timeout and counts it as slow_viewer, while the other, an ffmpeg
// player, receives every packet from its join on, exactly the clip's.
func TestStalledViewer(t *testing.T) {
	relayTest(t)
	clip := testmedia.Clip(t, clipOpts)
	clipFrames := testmedia.FrameMD5(t, clip)
	a := newAddrs(t)
	testrun.Start(t, "cloud.toml", cloudTOML(a), nil)
	// write_timeout well inside the clip: a socket that takes nothing for
	// 1 s is cut. The viewer queue stays at its default (1024 tags, about
	// 14 s of this clip), so it is the stalled socket that gets it cut.
	sink := fmt.Sprintf("  [[pipeline.stage]]\n  use = \"httpflv-sink\"\n  listen = %q\n  write_timeout = \"1s\"\n", a.HTTP)
	edge := testrun.Start(t, "edge.toml", edgeTOML("edge", a, "", sink), nil)
	path := "/live/stall.flv"
	url := "http://" + a.HTTP + path

	pushed := time.Now()
	push := testmedia.Push(t, context.Background(), clip, "rtmp://"+a.RTMP+"/live/stall", true)
	pushDone := make(chan error, 1)
	go func() { pushDone <- push.Wait() }()
	testrun.WaitPlayable(t, url, 5*time.Second)
	joined := time.Since(pushed)
	stalled := dialStalled(t, a.HTTP, path)
	player := watchFFmpeg(t, url)

	// Stall until the sink has cut the viewer, or until 2 s before the
	// clip's end, when it should long have.
	slow := func() float64 {
		return edge.RT.CounterSum("mediapipe_stage_drops_total", map[string]string{"stage": "httpflv-sink", "reason": "slow_viewer"})
	}
	stallUntil := pushed.Add(time.Duration(clipOpts.Seconds)*time.Second - 2*time.Second)
	for slow() == 0 && time.Now().Before(stallUntil) {
		time.Sleep(50 * time.Millisecond)
	}
	stalledFor := time.Since(pushed) - joined

	// Now read what the kernel holds: the connection must already be over
	// (end or reset) while the stream is still live.
	var got int64
	var readErr error
	buf := make([]byte, 64<<10)
	_ = stalled.SetReadDeadline(time.Now().Add(3 * time.Second))
	for readErr == nil {
		var n int
		n, readErr = stalled.Read(buf)
		got += int64(n)
	}
	// The edge forgets a stream before its viewers' responses end, so a
	// connection ended by the stream's end finds it gone here.
	live := len(edge.RT.Pipelines[0].Streams()) > 0
	var ne net.Error
	switch {
	case errors.As(readErr, &ne) && ne.Timeout():
		t.Errorf("stalled viewer still connected after stalling %.1f s (write_timeout 1 s): read %d bytes, then nothing for 3 s", stalledFor.Seconds(), got)
	case !live:
		t.Errorf("stalled viewer's connection ended only with the stream (%v after %d bytes): it was not cut while live", readErr, got)
	}
	t.Logf("stalled viewer: joined at %.1f s, stalled %.1f s, then read %d bytes before %v", joined.Seconds(), stalledFor.Seconds(), got, readErr)
	if n := slow(); n < 1 {
		t.Errorf("httpflv-sink's slow_viewer drop counter is %v after a viewer's socket took nothing for %.1f s: "+
			"a write_timeout cut must count as slow_viewer (pending in httpflv-sink if this is the only failure)", n, stalledFor.Seconds())
	}

	if err := <-pushDone; err != nil {
		t.Fatalf("push: %v\n%s", err, testmedia.Stderr(push))
	}
	player.check(t, "ffmpeg viewer beside a stalled one", clipFrames, framesFrom(clipFrames, (joined+joinSlack).Milliseconds()))
}
