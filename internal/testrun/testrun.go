// Package testrun starts pipelines from TOML text for tests: free loopback
// ports, then parse, build, run, wait until ready, and stop at cleanup.
package testrun

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/host"
	"github.com/mediapipe/mediapipe/internal/freeport"
)

// FreeTCP returns "127.0.0.1:port" for a free TCP port, or fails the test.
func FreeTCP(t testing.TB) string {
	t.Helper()
	addr, err := freeport.TCP()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// FreeUDP returns "127.0.0.1:port" for a free UDP port, or fails the test.
func FreeUDP(t testing.TB) string {
	t.Helper()
	addr, err := freeport.UDP()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// Running is a runtime started by Start.
type Running struct {
	RT *host.Runtime

	name   string
	within time.Duration
	cancel context.CancelFunc
	done   chan error
	file   *host.File
	once   sync.Once
	err    error
}

// Stop cancels the runtime, waits for Run to return (at most the stop
// bound, 10 s unless StopWithin says otherwise) and closes the file
// (plugin processes). It returns Run's error or the timeout; later calls
// return the same without waiting again.
func (r *Running) Stop() error {
	r.once.Do(func() {
		r.cancel()
		select {
		case r.err = <-r.done:
		case <-time.After(r.within):
			r.err = fmt.Errorf("%s did not stop within %s", r.name, r.within)
		}
		r.file.Close()
	})
	return r.err
}

// Option changes how Start parses, builds or waits.
type Option func(*config)

type config struct {
	dir           string
	reg           *core.Registry
	opts          host.Options
	ready, within time.Duration
	// StartProcess only: the network namespace (ip netns) to run in, and
	// the admin address (reachable from the test) instead of a free one.
	netns, admin string
}

// Dir resolves the file's relative paths (plugin = "./x") against dir
// instead of a fresh temporary directory.
func Dir(dir string) Option { return func(c *config) { c.dir = dir } }

// Registry parses against reg instead of core.Default.
func Registry(reg *core.Registry) Option { return func(c *config) { c.reg = reg } }

// Build passes opts (a logger, metrics, a clock) to host.Build.
func Build(opts host.Options) Option { return func(c *config) { c.opts = opts } }

// ReadyWithin bounds the wait for Ready (default 15 s).
func ReadyWithin(d time.Duration) Option { return func(c *config) { c.ready = d } }

// StopWithin bounds the wait for Run to return after a stop (default 10 s).
func StopWithin(d time.Duration) Option { return func(c *config) { c.within = d } }

// Netns runs StartProcess's process in the named network namespace
// (ip netns exec); give it an AdminAt the test can reach there.
func Netns(name string) Option { return func(c *config) { c.netns = name } }

// AdminAt puts StartProcess's admin server on addr instead of a free
// loopback port.
func AdminAt(addr string) Option { return func(c *config) { c.admin = addr } }

// Start parses toml (named name, with environment overrides env) against
// core.Default, builds it, runs it and waits until every stage is ready; it
// fails the test on any error there. A cleanup stops the runtime and fails
// the test if Run returned an error or did not return in time.
func Start(t testing.TB, name, toml string, env []string, opts ...Option) *Running {
	t.Helper()
	c := config{reg: core.Default, ready: 15 * time.Second, within: 10 * time.Second}
	for _, o := range opts {
		o(&c)
	}
	if c.dir == "" {
		c.dir = t.TempDir()
	}
	f, err := host.Load(name, c.dir, []byte(toml), env, c.reg)
	if err != nil {
		t.Fatalf("%s:\n%v", name, err)
	}
	rt, err := host.Build(f, c.opts)
	if err != nil {
		f.Close()
		t.Fatalf("%s: %v", name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{RT: rt, name: name, within: c.within, cancel: cancel, done: make(chan error, 1), file: f}
	go func() { r.done <- rt.Run(ctx) }()
	t.Cleanup(func() {
		if err := r.Stop(); err != nil {
			t.Errorf("stopping %s: %v", name, err)
		}
	})
	select {
	case <-rt.Ready():
	case err := <-r.done:
		r.once.Do(func() { cancel(); f.Close() }) // reported here, not again at cleanup
		t.Fatalf("%s ended before ready: %v", name, err)
	case <-time.After(c.ready):
		t.Fatalf("%s not ready within %s", name, c.ready)
	}
	return r
}
