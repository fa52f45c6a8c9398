// Package stagetest drives one stage in memory: feed packets and events in,
// collect what comes out, move a fake clock. No network, no sleeps.
package stagetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
)

// Captured is a copy of one emitted packet, safe to keep after the stage
// released or reused the original.
type Captured struct {
	Event     core.Event
	Stream    *core.Stream
	Data      []byte
	Type      uint8
	Timestamp uint32
}

// Collector is an Output that copies and keeps every packet it is given.
type Collector struct {
	mu      sync.Mutex
	packets []Captured
	notify  chan struct{}
}

// NewCollector returns an empty collector.
func NewCollector() *Collector { return &Collector{notify: make(chan struct{}, 1)} }

// Emit implements core.Output.
func (c *Collector) Emit(p *core.Packet) {
	cp := Captured{Event: p.Event, Stream: p.Stream, Type: p.Type, Timestamp: p.Timestamp}
	if p.Data != nil {
		cp.Data = append([]byte(nil), p.Data...)
	}
	p.Release()
	c.mu.Lock()
	c.packets = append(c.packets, cp)
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// Packets returns a copy of everything collected so far.
func (c *Collector) Packets() []Captured {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Captured(nil), c.packets...)
}

// Data returns only the data packets collected so far.
func (c *Collector) Data() []Captured {
	var out []Captured
	for _, p := range c.Packets() {
		if p.Event == core.EventData {
			out = append(out, p)
		}
	}
	return out
}

// WaitData waits until at least n data packets arrived or timeout passed
// (real time: for stages that do network I/O), and returns them.
func (c *Collector) WaitData(n int, timeout time.Duration) []Captured {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if d := c.Data(); len(d) >= n {
			return d
		}
		select {
		case <-c.notify:
		case <-deadline.C:
			return c.Data()
		}
	}
}

// Harness runs one stage on its own goroutine with an input channel, a
// collecting output and a fake clock.
type Harness struct {
	t      testing.TB
	In     chan *core.Packet
	Out    *Collector
	Clock  *FakeClock
	Env    *core.Env
	cancel context.CancelFunc
	done   chan error
	closed bool
}

// Start builds an Env with the fake clock (unless env is given), opens the
// stage if it is an Opener, and runs it. source says the stage gets no input.
func Start(t testing.TB, stage core.Stage, env *core.Env, source bool) *Harness {
	t.Helper()
	h := &Harness{t: t, Out: NewCollector(), Clock: NewFakeClock(time.Unix(1_700_000_000, 0)), done: make(chan error, 1)}
	if env == nil {
		env = core.TestEnv("stagetest")
		env.Clock = h.Clock
	}
	h.Env = env
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	if o, ok := stage.(core.Opener); ok {
		if err := o.Open(ctx); err != nil {
			cancel()
			t.Fatalf("open: %v", err)
		}
	}
	var in <-chan *core.Packet
	if !source {
		h.In = make(chan *core.Packet, 1024)
		in = h.In
	}
	go func() { h.done <- stage.Run(ctx, in, h.Out) }()
	t.Cleanup(func() {
		if !h.closed {
			_ = h.Close()
		}
	})
	return h
}

// Send hands p to the stage (blocking while its queue is full).
func (h *Harness) Send(p *core.Packet) { h.In <- p }

// StartStream sends a start event for a new stream named name.
func (h *Harness) StartStream(name string) *core.Stream {
	s := core.NewStream(name)
	h.Send(core.NewEvent(core.EventStart, s))
	return s
}

// EndStream sends s's end event.
func (h *Harness) EndStream(s *core.Stream) { h.Send(core.NewEvent(core.EventEnd, s)) }

// SendData sends a pooled copy of data as a data packet of s.
func (h *Harness) SendData(s *core.Stream, typ uint8, ts uint32, data []byte) {
	p := core.NewPacket(len(data))
	copy(p.Data, data)
	p.Stream, p.Type, p.Timestamp = s, typ, ts
	h.Send(p)
}

// Close closes the input (or, for a source, cancels its context), waits for
// Run to return (5 s at most) and returns its error.
func (h *Harness) Close() error {
	h.t.Helper()
	if h.closed {
		return nil
	}
	h.closed = true
	if h.In != nil {
		close(h.In)
	} else {
		h.cancel()
	}
	defer h.cancel()
	select {
	case err := <-h.done:
		return err
	case <-time.After(5 * time.Second):
		h.t.Errorf("stage did not return within 5 s of its input closing")
		return context.DeadlineExceeded
	}
}

// FakeClock is a core.Clock that moves only when told.
type FakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

// NewFakeClock returns a clock standing at start.
func NewFakeClock(start time.Time) *FakeClock { return &FakeClock{now: start} }

// Now implements core.Clock.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer implements core.Clock.
func (c *FakeClock) NewTimer(d time.Duration) core.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{clock: c, ch: make(chan time.Time, 1), at: c.now.Add(d), active: true}
	c.timers = append(c.timers, t)
	return t
}

// Advance moves the clock by d, firing every timer that falls due.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	now := c.now
	for _, t := range c.timers {
		if t.active && !t.at.After(now) {
			t.active = false
			select {
			case t.ch <- now:
			default:
			}
		}
	}
	c.mu.Unlock()
}

type fakeTimer struct {
	clock  *FakeClock
	ch     chan time.Time
	at     time.Time
	active bool
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	was := t.active
	t.active = false
	return was
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	was := t.active
	t.at = t.clock.now.Add(d)
	t.active = true
	if d <= 0 {
		t.active = false
		select {
		case t.ch <- t.clock.now:
		default:
		}
	}
	return was
}

// Discard is an Output that releases every packet: for benchmarks that
// measure a stage and not what follows it.
type Discard struct{}

// Emit implements core.Output.
func (Discard) Emit(p *core.Packet) { p.Release() }
