package udpsink

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkRawGSO is the ceiling of the GSO path as `mediapipe bench
// --floor` measures it: the same datagram sent as UDP_SEGMENT runs of 48
// (48 × 1200 bytes fits one 64 KB send), one write each from one buffer,
// with no pipeline around it.
func BenchmarkRawGSO(b *testing.B) {
	c := rawSender(b)
	pkt := rtpPacket(b, 1, 0, 0, 1188)
	rc, err := c.SyscallConn()
	if err != nil {
		b.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT, len(pkt)) }); err != nil || serr != nil {
		b.Skipf("no UDP_SEGMENT here: %v %v", err, serr)
	}
	const segs = 48
	buf := make([]byte, 0, segs*len(pkt))
	for range segs {
		buf = append(buf, pkt...)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	cpu := procCPU()
	for sent := 0; sent < b.N; {
		k := min(segs, b.N-sent)
		if _, err := c.Write(buf[:k*len(pkt)]); err != nil {
			b.Fatal(err)
		}
		sent += k
	}
	b.ReportMetric(float64(procCPU()-cpu)/float64(b.N), "cpu-ns/pkt")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
}

// procCPU is the CPU time, user and system, the process has used: what a
// flat-out send costs per packet on a shared machine, where the wall-clock
// rate moves with the neighbours' load.
func procCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
