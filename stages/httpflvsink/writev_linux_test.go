package httpflvsink

import (
	"net"
	"syscall"
	"testing"
)

// TestTryWritevNoAllocs: the flusher's writev is on the per-tag path, so it
// must not allocate (its closure once escaped n, errno and the iovecs).
func TestTryWritevNoAllocs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server := <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	defer server.Close()
	rc, err := server.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var iov iovecs
	a, b := make([]byte, 100), make([]byte, 50)
	bufs := [][]byte{a, nil, b}
	// 200 runs of 150 B stay well inside loopback's socket buffer, so every
	// call writes (none is a cheaper EAGAIN).
	allocs := testing.AllocsPerRun(200, func() {
		n, err := tryWritev(rc, &iov, bufs)
		if err != nil || n != 150 {
			t.Fatalf("tryWritev: %d, %v", n, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("tryWritev allocates %v times per call, want 0", allocs)
	}
}
