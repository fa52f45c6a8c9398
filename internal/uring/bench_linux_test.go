package uring

import (
	"io"
	"net"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pairs is n loopback TCP connections: w the sending ends, r the receiving.
type pairs struct {
	w   []*net.TCPConn
	r   []*net.TCPConn
	fds []int
	rcs []syscall.RawConn
}

func newPairs(tb testing.TB, n int, noDelay bool) *pairs {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	p := &pairs{}
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			tb.Fatal(err)
		}
		a, err := ln.Accept()
		if err != nil {
			tb.Fatal(err)
		}
		w := a.(*net.TCPConn)
		_ = w.SetNoDelay(noDelay)
		rc, err := w.SyscallConn()
		if err != nil {
			tb.Fatal(err)
		}
		var fd int
		_ = rc.Control(func(f uintptr) { fd = int(f) })
		p.w, p.r, p.fds, p.rcs = append(p.w, w), append(p.r, c.(*net.TCPConn)), append(p.fds, fd), append(p.rcs, rc)
	}
	tb.Cleanup(func() {
		for i := range p.w {
			p.w[i].Close()
			p.r[i].Close()
		}
	})
	return p
}

// drain reads every receiving end until it closes.
func (p *pairs) drain(tb testing.TB) {
	var wg sync.WaitGroup
	for _, c := range p.r {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = io.Copy(io.Discard, c)
		}()
	}
	tb.Cleanup(func() {
		for _, c := range p.r {
			c.Close()
		}
		wg.Wait()
	})
}

// payload is what the sink sends a viewer per flush: a chunk size line and
// one or two tags, about 1.7 KB.
func payload(i int) [][]byte {
	line := []byte("\r\n6a4\r\n")
	a := make([]byte, 1200)
	b := make([]byte, 500)
	switch i % 3 {
	case 0:
		return [][]byte{append(append(line, a...), b...)}
	case 1:
		return [][]byte{line, append(a, b...)}
	}
	return [][]byte{line, a, b}
}

// writevOne is the sink's writev path: one raw writev through the RawConn.
type writevOne struct {
	iov  []unix.Iovec
	fn   func(uintptr) bool
	sent int64
}

func (w *writevOne) send(rc syscall.RawConn, bufs [][]byte) {
	w.iov = w.iov[:0]
	for _, b := range bufs {
		e := unix.Iovec{Base: &b[0]}
		e.SetLen(len(b))
		w.iov = append(w.iov, e)
	}
	if w.fn == nil {
		w.fn = func(fd uintptr) bool {
			n, _, e := unix.RawSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&w.iov[0])), uintptr(len(w.iov)))
			if e == 0 {
				w.sent += int64(n)
			}
			return true
		}
	}
	_ = rc.Write(w.fn)
}

// BenchmarkFanout sends one ~1.7 KB write to each of 200 sockets per
// iteration; ns/write is per socket.
func BenchmarkFanout(b *testing.B) {
	const conns = 200
	for _, nd := range []struct {
		name string
		on   bool
	}{{"nagle", false}, {"nodelay", true}} {
		bufs := make([][][]byte, conns)
		for i := range bufs {
			bufs[i] = payload(i)
		}
		b.Run("writev/"+nd.name, func(b *testing.B) {
			p := newPairs(b, conns, nd.on)
			p.drain(b)
			var w writevOne
			b.ReportAllocs()
			cpu := threadCPU(b)
			for b.Loop() {
				for i, rc := range p.rcs {
					w.send(rc, bufs[i])
				}
			}
			cpu.report(b, conns)
			b.ReportMetric(float64(w.sent)/float64(b.N*conns), "B/write")
		})
		b.Run("uring/"+nd.name, func(b *testing.B) {
			p := newPairs(b, conns, nd.on)
			p.drain(b)
			r, err := New(0)
			if err != nil {
				b.Skip(err)
			}
			defer r.Close()
			b.ReportAllocs()
			cpu := threadCPU(b)
			var sent int64
			for b.Loop() {
				for i, fd := range p.fds {
					r.Add(fd, bufs[i])
				}
				if err := r.Submit(); err != nil {
					b.Fatal(err)
				}
				for i := range r.Len() {
					n, err := r.Result(i)
					if err != nil {
						b.Fatal(err)
					}
					sent += int64(n)
				}
			}
			cpu.report(b, conns)
			b.ReportMetric(float64(sent)/float64(b.N*conns), "B/write")
		})
	}
}

// cpuMeter reads the sending thread's CPU time (user and system, the
// loopback's receive work done in its system calls included), the
// benchmark goroutine locked to its thread meanwhile.
type cpuMeter struct{ from, procFrom int64 }

func threadCPU(b *testing.B) *cpuMeter {
	runtime.LockOSThread()
	b.Cleanup(runtime.UnlockOSThread)
	b.ResetTimer()
	return &cpuMeter{from: threadNanos(), procFrom: procNanos()}
}

func threadNanos() int64 { return rusage(unix.RUSAGE_THREAD) }

// procNanos is the whole process's CPU time: the readers' and any kernel
// worker thread's too.
func procNanos() int64 { return rusage(unix.RUSAGE_SELF) }

func rusage(who int) int64 {
	var ru unix.Rusage
	_ = unix.Getrusage(who, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func (c *cpuMeter) report(b *testing.B, conns int) {
	cpu, proc := threadNanos()-c.from, procNanos()-c.procFrom
	b.ReportMetric(float64(proc)/float64(b.N*conns), "proc-cpu-ns/write")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*conns), "ns/write")
	b.ReportMetric(float64(cpu)/float64(b.N*conns), "cpu-ns/write")
}
