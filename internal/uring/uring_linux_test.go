package uring

import (
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/internal/testrun"
)

func newRing(t *testing.T) *Ring {
	t.Helper()
	r, err := New(0)
	if err != nil {
		t.Skip(err) // no io_uring here: the callers' writev path is what runs
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// A socket nobody reads fills up; a send to it then completes at once with
// EAGAIN (0 bytes, no error) instead of waiting for room.
func TestFullSocketIsEAGAIN(t *testing.T) {
	r := newRing(t)
	p := newPairs(t, 1, true)
	_ = p.w[0].SetWriteBuffer(16 << 10)
	buf := make([]byte, 64<<10)
	done := make(chan int, 1)
	go func() {
		total := 0
		for range 1000 {
			i := r.Add(p.fds[0], [][]byte{buf})
			if err := r.Submit(); err != nil {
				t.Error(err)
				break
			}
			n, err := r.Result(i)
			if err != nil {
				t.Error(err)
				break
			}
			if n == 0 {
				break
			}
			total += n
		}
		done <- total
	}()
	total := testrun.Within(t, done, 5*time.Second, "sends to a full socket to return")
	if total == 0 || total >= 1000*len(buf) {
		t.Fatalf("sent %d bytes before the socket was full", total)
	}
}
