package httpflvsink_test

import (
	"slices"
	"testing"

	"github.com/mediapipe/mediapipe/internal/testrun"
	"github.com/mediapipe/mediapipe/stages/httpflvsink"
)

// TestTCPNoDelay: viewer sockets leave Nagle on unless tcp_nodelay asks
// otherwise (Go turns it off on every socket it accepts).
func TestTCPNoDelay(t *testing.T) {
	for _, noDelay := range []bool{false, true} {
		s := startSink(t, httpflvsink.Config{GOPCache: true, TCPNoDelay: noDelay})
		s.h.StartStream("live/a")
		s.sync(t)
		testrun.Watch(s.base + "/live/a.flv")
		testrun.Eventually(t, testrun.WaitLimit, "the viewer", func() bool { return s.viewers() == 1 })
		if got := httpflvsink.NoDelay(s.stage); !slices.Equal(got, []bool{noDelay}) {
			t.Errorf("tcp_nodelay = %v: viewer sockets have TCP_NODELAY %v", noDelay, got)
		}
	}
}
