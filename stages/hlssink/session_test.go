package hlssink

import (
	"slices"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
)

// An HLS viewer is a client IP asking for a stream's files: one session
// however many connections it uses, ended when it has been quiet for the
// window or its stream ended; a kicked one is refused for kickBan.
func TestHLSSessions(t *testing.T) {
	env := core.TestEnv("hls-sink")
	var got []string
	env.Events.Subscribe(func(n core.Notice) { got = append(got, n.Name+" "+n.Client) })
	e := newEntry("live/a", nil)
	s := &Stage{cfg: Config{SegmentMinDuration: time.Second}, env: env, byName: map[string]*entry{"live/a": e}}
	s.sessions = newSessions(s)
	t0 := time.Now()
	ss := s.sessions

	if _, ok := ss.touch("127.0.0.1:5000", "live/a", t0, true); !ok {
		t.Fatal("refused")
	}
	ctr, _ := ss.touch("127.0.0.1:5001", "live/a", t0.Add(time.Second), true) // another connection, same player
	ctr.Add(100)
	l := env.Sessions.List(core.Viewer, "live/a")
	if len(l) != 1 || l[0].Protocol != "hls" || l[0].Client != "127.0.0.1" || l[0].Bytes() != 100 {
		t.Fatalf("sessions %+v", l)
	}
	ss.sweep(t0.Add(sessionWindow), false) // asked a second later: not quiet yet
	if len(env.Sessions.List("", "")) != 1 {
		t.Fatal("ended while still asking")
	}
	ss.sweep(t0.Add(time.Second+sessionWindow+time.Millisecond), false)
	if len(env.Sessions.List("", "")) != 0 {
		t.Fatal("quiet session not ended")
	}

	// Kicked: ended at once, refused for kickBan, then welcome again.
	t1 := t0.Add(time.Minute)
	ss.touch("127.0.0.1:5002", "live/a", t1, true)
	env.Sessions.List(core.Viewer, "live/a")[0].Kick()
	if _, ok := ss.touch("127.0.0.1:5003", "live/a", time.Now(), true); ok {
		t.Error("a kicked client is served")
	}
	if _, ok := ss.touch("127.0.0.2:5003", "live/a", time.Now(), true); !ok {
		t.Error("another client is refused")
	}
	if _, ok := ss.touch("127.0.0.1:5004", "live/a", time.Now().Add(kickBan+time.Second), true); !ok {
		t.Error("still refused after the ban")
	}

	// The stream ends: its sessions end at the next sweep.
	e.mu.Lock()
	e.ended = true
	e.mu.Unlock()
	ss.sweep(time.Now().Add(kickBan+time.Second), false)
	if n := len(env.Sessions.List("", "")); n != 0 {
		t.Errorf("%d sessions outlive their stream", n)
	}
	want := []string{"play 127.0.0.1", "stop 127.0.0.1", "play 127.0.0.1", "stop 127.0.0.1", "play 127.0.0.2", "play 127.0.0.1", "stop 127.0.0.2", "stop 127.0.0.1"}
	// The last two stops come from one sweep, in map order.
	if len(got) != len(want) || !slices.Equal(got[:6], want[:6]) || !slices.Contains(got[6:], "stop 127.0.0.2") || !slices.Contains(got[6:], "stop 127.0.0.1") {
		t.Errorf("notices\n got %q\nwant %q", got, want)
	}
}
