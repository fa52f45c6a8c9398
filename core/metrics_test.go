package core

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// logBuf is a log sink tests can read while stages write to it.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Split(strings.TrimSpace(l.b.String()), "\n")
}

func newLogged() (*Metrics, *StageMetrics, *logBuf) {
	buf := &logBuf{}
	m := NewMetrics()
	sm := m.Stage("p", 1, "s")
	sm.SetLogger(slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})))
	return m, sm, buf
}

// TestDropSummaryOnTimer: drops held back by the log limit are summarised
// within dropLogEvery even when no later drop of that reason comes (they
// used to wait for the next one, minutes late).
func TestDropSummaryOnTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, sm, buf := newLogged()
		defer m.Close()
		d := sm.Drop("idle_timeout")
		d.Inc()
		d.Add(1999)
		if got := buf.lines(); len(got) != 1 || !strings.Contains(got[0], "count=1") {
			t.Fatalf("first drop: log %q, want one line with count=1", got)
		}
		time.Sleep(dropLogEvery + time.Millisecond)
		synctest.Wait()
		got := buf.lines()
		if len(got) != 2 || !strings.Contains(got[1], `msg=dropped reason=idle_timeout count=1999`) {
			t.Fatalf("after %v: log %q, want the summary of 1999", dropLogEvery, got)
		}
		// Nothing pending: no more lines, however long it stays quiet.
		time.Sleep(10 * dropLogEvery)
		synctest.Wait()
		if n := len(buf.lines()); n != 2 {
			t.Fatalf("quiet: %d lines, want 2", n)
		}
		if v := d.Value(); v != 2000 {
			t.Fatalf("counted %v, want 2000", v)
		}
	})
}

// TestRefusalFloodBounded: a flood of refusals with huge attacker strings
// costs one detailed line and one summary per interval.
func TestRefusalFloodBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, sm, buf := newLogged()
		defer m.Close()
		r := sm.Drop("publish_refused")
		name := strings.Repeat("x", 65<<10)
		for i := 0; i < 400; i++ {
			r.Refused("publish refused", "stream", Clip(name), "why", "wrong publish key")
		}
		time.Sleep(dropLogEvery + time.Millisecond)
		synctest.Wait()
		got := buf.lines()
		if len(got) != 2 {
			t.Fatalf("log %q, want 2 lines", got)
		}
		if !strings.Contains(got[0], "count=1") || !strings.Contains(got[1], "msg=refused reason=publish_refused count=399") {
			t.Fatalf("log %q", got)
		}
		if n := len(strings.Join(got, "\n")); n > 1024 {
			t.Fatalf("%d bytes of log for 400 refusals", n)
		}
	})
}

// TestCloseFlushes: Close writes what is pending and leaves no timer.
func TestCloseFlushes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, sm, buf := newLogged()
		d := sm.Drop("junk")
		d.Add(3)
		d.Add(18000)
		m.Close()
		got := buf.lines()
		if len(got) != 2 || !strings.Contains(got[1], "count=18000") {
			t.Fatalf("log %q, want the pending summary at Close", got)
		}
		d.Add(5) // after Close: counted, no timer armed
		m.mu.Lock()
		stopped := m.timer == nil || !m.timer.Stop()
		m.mu.Unlock()
		if !stopped {
			t.Fatal("a summary timer was armed after Close")
		}
	})
}

func TestDropAllocs(t *testing.T) {
	m, sm, _ := newLogged()
	defer m.Close()
	d := sm.Drop("queue_full")
	d.Inc()
	if a := testing.AllocsPerRun(1000, d.Inc); a != 0 {
		t.Fatalf("Inc allocates %v per call", a)
	}
}

func TestClip(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"live/cam1", "live/cam1"},
		{"a\nb\x00c\x1b[31m", "a?b?c?[31m"},
		{"bad\xffutf8", "bad?utf8"},
		{strings.Repeat("é", 100), strings.Repeat("é", ClipLen/2) + "…(200 bytes)"},
		{strings.Repeat("x", 65<<10), strings.Repeat("x", ClipLen) + "…(66560 bytes)"},
	} {
		if got := Clip(c.in); got != c.want {
			t.Errorf("Clip(%.20q) = %q, want %q", c.in, got, c.want)
		}
	}
	short := "live/cam1"
	if a := testing.AllocsPerRun(100, func() { _ = Clip(short) }); a != 0 {
		t.Errorf("Clip of a clean short string allocates %v", a)
	}
}
