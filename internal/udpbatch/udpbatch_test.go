package udpbatch

import (
	"bytes"
	"errors"
	"net"
	"testing"
	"time"
)

func pair(t testing.TB, network, addr string) (*net.UDPConn, *net.UDPConn) {
	t.Helper()
	rx, err := net.ListenUDP(network, &net.UDPAddr{IP: net.ParseIP(addr)})
	if err != nil {
		t.Skipf("no %s loopback: %v", network, err)
	}
	tx, err := net.DialUDP(network, nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rx.Close(); tx.Close() })
	return tx, rx
}

func TestRoundTrip(t *testing.T) {
	for _, c := range []struct{ network, addr string }{{"udp4", "127.0.0.1"}, {"udp6", "::1"}} {
		t.Run(c.network, func(t *testing.T) {
			tx, rx := pair(t, c.network, c.addr)
			const count = 100
			out := make([]Message, count)
			for i := range out {
				out[i].Buffers = [][]byte{bytes.Repeat([]byte{byte(i)}, 10+i)}
			}
			w := NewWriter(tx)
			if n, err := w.Write(out); n != count || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
			r, err := NewReader(rx)
			if err != nil {
				t.Fatal(err)
			}
			// small first buffers plus an overflow buffer: scatter read.
			in := make([]Message, 16)
			for i := range in {
				in[i].Buffers = [][]byte{make([]byte, 50), make([]byte, 2000)}
			}
			rx.SetReadDeadline(time.Now().Add(5 * time.Second))
			from := tx.LocalAddr().(*net.UDPAddr).AddrPort()
			got := 0
			for got < count {
				n, err := r.Read(in)
				if err != nil {
					t.Fatalf("Read after %d: %v", got, err)
				}
				for i, m := range in[:n] {
					if f := r.From(i); f != from {
						t.Fatalf("datagram %d: From = %v, want the sender %v", got, f, from)
					}
					data := append(append([]byte(nil), m.Buffers[0]...), m.Buffers[1]...)[:m.N]
					if want := out[got].Buffers[0]; !bytes.Equal(data, want) {
						t.Fatalf("datagram %d: got %d bytes, want %d", got, len(data), len(want))
					}
					got++
				}
			}
		})
	}
}

func TestWriteStopsAtFailure(t *testing.T) {
	// A datagram over 64 KiB fails synchronously (EMSGSIZE) in the middle
	// of a batch: Write must say where it stopped.
	tx, _ := pair(t, "udp4", "127.0.0.1")
	ms := []Message{{Buffers: [][]byte{{1}}}, {Buffers: [][]byte{make([]byte, 70000)}}, {Buffers: [][]byte{{3}}}}
	n, err := NewWriter(tx).Write(ms)
	if n != 1 || err == nil {
		t.Fatalf("Write = %d, %v; want 1 and an error", n, err)
	}
}

func TestReadDeadline(t *testing.T) {
	_, rx := pair(t, "udp4", "127.0.0.1")
	r, _ := NewReader(rx)
	rx.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	ms := []Message{{Buffers: [][]byte{make([]byte, 10)}}}
	if n, err := r.Read(ms); n != 0 || err == nil {
		t.Fatalf("Read = %d, %v; want a timeout", n, err)
	}
}

func BenchmarkReadWrite(b *testing.B) {
	tx, rx := pair(b, "udp4", "127.0.0.1")
	rx.SetReadBuffer(8 << 20)
	const batch = 32
	out := make([]Message, batch)
	in := make([]Message, batch)
	for i := range out {
		out[i].Buffers = [][]byte{make([]byte, 1200)}
		in[i].Buffers = [][]byte{make([]byte, 2048)}
	}
	w := NewWriter(tx)
	r, _ := NewReader(rx)
	b.ReportAllocs()
	b.SetBytes(1200 * batch)
	for b.Loop() {
		if _, err := w.Write(out); err != nil {
			b.Fatal(err)
		}
		for got := 0; got < batch; {
			n, err := r.Read(in[:batch-got])
			if err != nil {
				b.Fatal(err)
			}
			got += n
		}
	}
}

func TestWriteToAddr(t *testing.T) {
	// An unconnected socket: each message names its destination.
	for _, c := range []struct{ network, addr string }{{"udp4", "127.0.0.1"}, {"udp6", "::1"}} {
		t.Run(c.network, func(t *testing.T) {
			_, rx := pair(t, c.network, c.addr)
			tx, err := net.ListenUDP(c.network, &net.UDPAddr{IP: net.ParseIP(c.addr)})
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Close()
			to := rx.LocalAddr().(*net.UDPAddr)
			ms := []Message{{Buffers: [][]byte{[]byte("one")}, Addr: to}, {Buffers: [][]byte{[]byte("two"), []byte("+")}, Addr: to}}
			if n, err := NewWriter(tx).Write(ms); n != 2 || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
			rx.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 64)
			for _, want := range []string{"one", "two+"} {
				n, from, err := rx.ReadFromUDP(buf)
				if err != nil {
					t.Fatal(err)
				}
				if string(buf[:n]) != want || from.Port != tx.LocalAddr().(*net.UDPAddr).Port {
					t.Fatalf("got %q from %v, want %q from %v", buf[:n], from, want, tx.LocalAddr())
				}
			}
		})
	}
}

func TestWriteClosed(t *testing.T) {
	tx, _ := pair(t, "udp4", "127.0.0.1")
	w := NewWriter(tx)
	tx.Close()
	if n, err := w.Write([]Message{{Buffers: [][]byte{{1}}}}); n != 0 || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write on a closed socket = %d, %v; want 0 and net.ErrClosed", n, err)
	}
}

func TestWriteAllocs(t *testing.T) {
	tx, rx := pair(t, "udp4", "127.0.0.1")
	w := NewWriter(tx)
	ms := make([]Message, 8)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, 100)}
	}
	buf := make([]byte, 200)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := w.Write(ms); err != nil {
			t.Fatal(err)
		}
		for range ms { // keep the receive queue from filling
			rx.SetReadDeadline(time.Now().Add(time.Second))
			if _, _, err := rx.ReadFromUDPAddrPort(buf); err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs > 0 {
		t.Fatalf("Write allocates %.1f times per batch; the send path must not", allocs)
	}
}
