package udpsink

import (
	"bytes"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mediapipe/mediapipe/core"
)

// TestGSORefused: a socket whose GSO sends the kernel refuses (SO_NO_CHECK
// makes every UDP_SEGMENT message fail with EINVAL, as a segment over the
// path MTU does) still gets every datagram of the batch, in order and intact,
// with no send_error: the first refusal stops GSO for that size and larger,
// the second for the destination, and the refused runs go again datagram by
// datagram within the same sendmmsg round.
func TestGSORefused(t *testing.T) {
	rx := listen(t)
	st := newStage(&Config{Destinations: []string{rx.LocalAddr().String()}, Batch: 64, GSO: true}, core.TestEnv("udp-sink"))
	if err := st.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer st.closeAll()
	d := st.dests.Load().dests[0]
	if !d.gso {
		t.Skip("kernel without UDP_SEGMENT")
	}
	rc, err := d.conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_NO_CHECK, 1) }); err != nil || serr != nil {
		t.Fatalf("SO_NO_CHECK: %v %v", err, serr)
	}
	s := core.NewStream("live/refused")
	st.now = time.Now()
	st.handle(core.NewEvent(core.EventStart, s))
	var sent [][]byte
	for i := range 30 {
		n := 1188
		if i >= 10 {
			n = 500 // a smaller size after the refused one: GSO is tried again, and refused again
		}
		if i == 20 {
			n = 50 // a lone datagram between runs
		}
		b := rtpPacket(t, 5, uint16(i), uint32(i), n)
		sent = append(sent, b)
		p := core.NewPacket(len(b))
		copy(p.Data, b)
		p.Stream = s
		st.handle(p)
	}
	st.flush()
	parseRTCP(t, read(t, rx))
	for i, want := range sent {
		if got := read(t, rx); !bytes.Equal(got, want) {
			t.Fatalf("datagram %d: %d bytes, want %d", i, len(got), len(want))
		}
	}
	if v := st.sendErr.Value(); v != 0 {
		t.Errorf("send_error = %v, want 0: refused GSO runs are resent, not lost", v)
	}
	if d.gso || d.gsoMax != 1200 || st.gsoSends != 0 {
		t.Errorf("after two refusals gso=%v gsoMax=%d gsoSends=%d, want GSO off, the refused size 1200 noted, no GSO send", d.gso, d.gsoMax, st.gsoSends)
	}
	if got := core.CounterValue(st.sent); got != float64(len(sent)+1) {
		t.Errorf("datagrams_sent = %v, want %d", got, len(sent)+1)
	}
}
