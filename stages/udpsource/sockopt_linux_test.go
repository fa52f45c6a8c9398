package udpsource

import (
	"net"
	"testing"
)

// TestDropReaderDoesNotAllocate: udp-source reads the kernel's drop count
// every housekeeping tick (up to 200 times a second); that read once cost
// three allocations.
func TestDropReaderDoesNotAllocate(t *testing.T) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	d := newDropReader(raw)
	if n, ok := d.drops(); !ok || n != 0 {
		t.Fatalf("drops() = %d, %v on a fresh socket, want 0, true", n, ok)
	}
	if a := testing.AllocsPerRun(200, func() { _, _ = d.drops() }); a != 0 {
		t.Fatalf("%v allocs per drop-count read", a)
	}
}
