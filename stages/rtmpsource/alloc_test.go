package rtmpsource

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
)

// loopConn is a net.Conn whose reads replay one byte stream forever.
type loopConn struct {
	net.Conn
	stream []byte
	off    int
}

func (c *loopConn) Read(p []byte) (int, error) {
	n := copy(p, c.stream[c.off:])
	c.off = (c.off + n) % len(c.stream)
	return n, nil
}

func (c *loopConn) SetReadDeadline(time.Time) error { return nil }

// TestConnReadDoesNotAllocate: guardedConn.Read runs for every chunk go-rtmp
// reads; it once cost an allocation each (errors.As's target escaping).
func TestConnReadDoesNotAllocate(t *testing.T) {
	body := bytes.Repeat([]byte{0xaf}, 100)
	c := &guardedConn{Conn: &loopConn{stream: chunk(len(body), 8, body)}, idle: time.Second, guard: newChunkGuard(1 << 20)}
	c.guard.skip = 0
	c.guard.state, c.guard.need = gsBasic, 1
	c.published.Store(true) // the per-read idle deadline is set too
	buf := make([]byte, 37) // reads that end mid-header and mid-body
	if a := testing.AllocsPerRun(1000, func() {
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Fatalf("%v allocs per read", a)
	}
}

// releasingOutput counts the packets it gets whole and releases them.
type releasingOutput struct {
	want   []byte
	n, bad int
}

func (o *releasingOutput) Emit(p *core.Packet) {
	o.n++
	if p.Type != flv.TypeVideo || !bytes.Equal(p.Data, o.want) {
		o.bad++
	}
	p.Release()
}

// TestMediaDoesNotAllocate: once its scratch buffer has grown to the
// largest tag, a media message costs rtmp-source no allocation (the packet
// comes from the pool).
func TestMediaDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	body := bytes.Repeat([]byte{0x17}, 5000)
	out := &releasingOutput{want: body}
	st := core.NewStream("live/a")
	// resumed: the timestamp mapping of a continued stream costs nothing either
	h := &handler{s: &Stage{out: out}, stream: st, tl: &timeline{stream: st}, resumed: true}
	var rd bytes.Reader
	msg := func() {
		rd.Reset(body)
		if err := h.OnVideo(40, &rd); err != nil {
			t.Fatal(err)
		}
	}
	msg() // grows the scratch buffer
	if a := testing.AllocsPerRun(200, msg); a != 0 {
		t.Fatalf("%v allocs per media message", a)
	}
	if out.n != 202 || out.bad != 0 {
		t.Fatalf("%d packets emitted (%d not the message), want 202", out.n, out.bad)
	}
}
