package httpflvsink

import (
	"net"
	"syscall"
	"testing"
)

// TestOutqNoAllocs: a viewer's send queue is read on the flusher's path
// (every few hundred ms per viewer), so reading it must not allocate.
func TestOutqNoAllocs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	rc, err := client.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	p := sockProbe{rc: rc}
	if n, ok := p.outq(); !ok || n != 0 {
		t.Fatalf("outq = %d, %v; want 0 bytes queued", n, ok)
	}
	if allocs := testing.AllocsPerRun(200, func() { p.outq() }); allocs != 0 {
		t.Fatalf("outq allocates %v times per call, want 0", allocs)
	}
}
