package rtmpsource_test

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/yutopp/go-rtmp"
	rtmpmsg "github.com/yutopp/go-rtmp/message"

	"github.com/mediapipe/mediapipe/stages/rtmpsource"
)

// TestAnnouncesChunkSize: the server's first message after the handshake
// is Set Chunk Size 4096, as nginx-rtmp's is, so a publisher such as ffmpeg
// sends its media in 4096-byte chunks rather than RTMP's default 128; and
// what the server sends after it is chunked by the size it announced (the
// client parses the connect answer, over 128 bytes, as one chunk).
func TestAnnouncesChunkSize(t *testing.T) {
	s := startSource(t, rtmpsource.Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var (
		mu      sync.Mutex
		fromSrv bytes.Buffer
		wg      sync.WaitGroup
	)
	wg.Add(1)
	go func() { // a proxy that keeps what the server sends
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		srv, err := net.Dial("tcp", s.url[len("rtmp://"):])
		if err != nil {
			return
		}
		defer srv.Close()
		go func() { _, _ = io.Copy(srv, c); _ = srv.Close() }()
		buf := make([]byte, 4096)
		for {
			n, err := srv.Read(buf)
			mu.Lock()
			fromSrv.Write(buf[:n])
			mu.Unlock()
			if _, werr := c.Write(buf[:n]); err != nil || werr != nil {
				return
			}
		}
	}()

	cc, err := rtmp.Dial("rtmp", ln.Addr().String(), &rtmp.ConnConfig{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- cc.Connect(&rtmpmsg.NetConnectionConnect{Command: rtmpmsg.NetConnectionConnectCommand{App: "live"}})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("connect not answered in 10 s")
	}
	_ = cc.Close()
	wg.Wait()

	const handshake = 1 + 1536 + 1536 // S0, S1, S2
	want := []byte{
		2,       // chunk type 0, chunk stream 2
		0, 0, 0, // timestamp
		0, 0, 4, // message length
		1,          // Set Chunk Size
		0, 0, 0, 0, // message stream 0
		0, 0, 0x10, 0, // 4096
	}
	mu.Lock()
	got := fromSrv.Bytes()
	mu.Unlock()
	if len(got) < handshake+len(want) {
		t.Fatalf("the server sent %d bytes", len(got))
	}
	if first := got[handshake : handshake+len(want)]; !bytes.Equal(first, want) {
		t.Fatalf("first message after the handshake: % x, want Set Chunk Size 4096: % x", first, want)
	}
}
