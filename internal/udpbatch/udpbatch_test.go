package udpbatch

import (
	"bytes"
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
