package httpflvsink

import (
	"fmt"
	"net"
	"os"
	"time"
)

// A viewer that reads a byte a second was never shed: the kernel took
// everything written to it into a send buffer it grew to megabytes, so write
// never blocked. Each viewer's socket now gets a send buffer of about a
// second of its stream (which also stops the kernel growing it), so a viewer
// that stops reading fills it within a second or two and write_timeout cuts
// it; and a viewer whose unacknowledged bytes, queued here or in the kernel,
// come to more than write_timeout of the stream is shed as well, even while
// its socket takes a little now and then.
const (
	// sendBufferPerRate: a viewer's send buffer holds this much of its stream.
	sendBufferPerRate = time.Second
	// minSendBuffer: also before the stream's rate is known; 64 KiB per
	// round trip carries some 5 Mbit/s over 100 ms.
	minSendBuffer = 64 << 10
	// maxSendBuffer: a viewer pins at most twice this (Linux's accounting).
	maxSendBuffer = 1 << 20
	// minLag: a viewer is never shed for being behind by less than this
	// (a short write_timeout on a slow stream).
	minLag = 64 << 10
	// maxCheckEvery: how often, at most, a viewer's send queue is read
	// while tags flow to it: a system call per viewer each time, which at
	// 250 ms was 4 % of a 1000-viewer edge; a tenth of the default
	// write_timeout late is still early.
	maxCheckEvery = time.Second
)

// sendBufferFor is the send buffer a viewer of a stream of rate bytes/s asks for.
func sendBufferFor(rate int64) int {
	return int(min(max(rate*int64(sendBufferPerRate)/int64(time.Second), minSendBuffer), maxSendBuffer))
}

// checkEvery is how often a viewer's send queue is read: often enough that
// shedding is late by a fraction of write_timeout at most.
func checkEvery(writeTimeout time.Duration) time.Duration {
	return min(writeTimeout/4, maxCheckEvery)
}

// errBehind cuts a viewer too far behind live; it counts as slow_viewer.
var errBehind = fmt.Errorf("more than write_timeout of the stream unacknowledged: %w", os.ErrDeadlineExceeded)

// measureRate updates st's rate from the bytes pushed since the last
// measure, at most once a second (push, mu held). A peak holds,
// fading by a quarter a second: a send buffer too big costs little, one too
// small costs throughput.
func (st *stream) measureRate(now time.Time) {
	if st.rateFrom.IsZero() {
		st.rateFrom, st.inBytes = now, 0
		return
	}
	d := now.Sub(st.rateFrom)
	if d < time.Second {
		return
	}
	win := st.inBytes * int64(time.Second) / int64(d)
	old := st.rate.Load()
	st.rate.Store(max(win, old-old/4))
	st.rateFrom, st.inBytes = now, 0
}

// setSendBuffer asks for an n-byte send buffer on v's socket (SO_SNDBUF,
// which also turns the kernel's autotuning off; the host's
// net.core.wmem_max caps it). A refusal is not asked again: the system's
// buffer stands, and the lag check still sheds.
func (v *viewer) setSendBuffer(n int) {
	v.sndbuf, v.sndbufSet = n, false
	if tc, ok := v.tcp.(*net.TCPConn); ok {
		v.sndbufSet = tc.SetWriteBuffer(n) == nil
	}
}

// maxKernelQueue is the most a socket whose send buffer was set to sndbuf
// can hold unacknowledged: Linux doubles SO_SNDBUF for its accounting,
// and takes one more segment while under it: up to 64 KiB, the GSO limit
// unless an interface is set for BIG TCP (gso_max_size above 64 KiB),
// where a lag check may then read the queue a check late.
func maxKernelQueue(sndbuf int) int64 {
	return 2*int64(sndbuf) + 64<<10
}

// checkLag, by v's owner with now and v.enq read when it took the queue,
// reads v's send queue at most every checkEvery: errBehind when more than
// write_timeout of the stream is still unacknowledged. It also grows v's
// send buffer as the stream's rate becomes known or rises.
func (s *Stage) checkLag(v *viewer, now time.Time, enq int64) error {
	if now.Sub(v.checked) < s.checkEvery {
		return nil
	}
	v.checked = now
	rate := v.st.rate.Load()
	if rate == 0 {
		return nil // not a second of the stream yet
	}
	if want := sendBufferFor(rate); want > v.sndbuf+v.sndbuf/4 {
		v.setSendBuffer(want)
	}
	lag := enq - v.written
	limit := max(rate*int64(s.cfg.WriteTimeout)/int64(time.Second), minLag)
	if v.sndbufSet && lag+maxKernelQueue(v.sndbuf) <= limit {
		// Even a full send buffer would leave v within the limit: the
		// queue need not be read (a system call per viewer a second,
		// 200 a second at 1 stream x 200 viewers).
		return nil
	}
	kernel, ok := v.probe.outq()
	if !ok {
		return nil
	}
	if lag+int64(kernel) > limit {
		return errBehind
	}
	return nil
}
