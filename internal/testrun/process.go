package testrun

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/internal/metricread"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// Binary returns the path of a mediapipe binary built from this checkout
// (go build ./cmd/mediapipe into a temporary directory), built once per test
// binary however many tests ask. A race-enabled test binary gets a
// race-enabled mediapipe. Call RemoveBinary from TestMain when done.
func Binary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			binErr = err
			return
		}
		if binDir, err = os.MkdirTemp("", "mediapipe-testrun-bin-"); err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(binDir, "mediapipe")
		args := []string{"build", "-o", binPath}
		if raceEnabled() {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./cmd/mediapipe")...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./cmd/mediapipe in %s: %w\n%s", root, err, out)
		}
	})
	if binErr != nil {
		t.Fatalf("testrun: %v", binErr)
	}
	return binPath
}

// RemoveBinary deletes what Binary built (nothing if it built nothing).
func RemoveBinary() {
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
}

// moduleRoot is the directory of the go.mod above the working directory
// (a test runs in its package's directory).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = up
	}
}

func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}

// Process is `mediapipe run FILE` started by StartProcess: a separate OS
// process, as a user runs the cloud and each edge.
type Process struct {
	Name  string // the pipeline file's name, for messages
	File  string // where the pipeline file was written
	Admin string // the admin server's address (/metrics, /api/streams)
	PID   int

	cmd    *exec.Cmd
	log    *capBuffer
	within time.Duration
	done   chan struct{} // closed when the process has exited
	err    error         // Wait's result, set before done closes
	once   sync.Once
	stop   error
	told   atomic.Bool // Stop's result went to a caller, not only to the cleanup
}

// StartProcess writes toml (which must have no [admin] table: one is added on
// a free port) to name in a temporary directory (or Dir), runs the Binary on
// it with environment overrides env, and waits until the admin server
// answers, which it does only once every stage has bound its listeners. A
// cleanup stops the process by PID (SIGTERM, then SIGKILL past the stop
// bound), fails the test unless it exited 0 within the bound, and logs its
// output when the test failed. On Linux the process is also killed if the
// test binary dies first.
func StartProcess(t testing.TB, name, toml string, env []string, opts ...Option) *Process {
	t.Helper()
	bin := Binary(t)
	c := config{ready: 15 * time.Second, within: 10 * time.Second}
	for _, o := range opts {
		o(&c)
	}
	if c.dir == "" {
		c.dir = t.TempDir()
	}
	p := &Process{
		Name:   name,
		File:   filepath.Join(c.dir, filepath.Base(name)),
		Admin:  c.admin,
		log:    &capBuffer{max: 1 << 20},
		within: c.within,
		done:   make(chan struct{}),
	}
	if p.Admin == "" {
		p.Admin = FreeTCP(t)
	}
	text := toml + fmt.Sprintf("\n[admin]\nlisten = %q\n", p.Admin)
	if err := os.WriteFile(p.File, []byte(text), 0o644); err != nil {
		t.Fatalf("testrun: %v", err)
	}
	p.cmd = exec.Command(bin, "run", p.File)
	if c.netns != "" { // ip execs the binary: the PID stays the process's
		p.cmd = exec.Command("ip", "netns", "exec", c.netns, bin, "run", p.File)
	}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.SysProcAttr = procAttr()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("testrun: starting %s: %v", name, err)
	}
	p.PID = p.cmd.Process.Pid
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if err := p.stopOnce(); err != nil && !p.told.Load() {
			t.Errorf("stopping %s: %v", name, err)
		}
		if t.Failed() {
			t.Logf("%s (pid %d) output:\n%s", name, p.PID, p.Log())
		}
	})

	deadline := time.Now().Add(c.ready)
	for {
		if p.healthy() {
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("%s (pid %d) exited before ready: %v\n%s", name, p.PID, p.err, p.Log())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s (pid %d) not ready within %s\n%s", name, p.PID, c.ready, p.Log())
		}
	}
}

var healthClient = &http.Client{Timeout: time.Second}

func (p *Process) healthy() bool {
	resp, err := healthClient.Get("http://" + p.Admin + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Exited is closed once the process has exited, for whatever reason.
func (p *Process) Exited() <-chan struct{} { return p.done }

// Alive reports whether the process is still running and its admin server
// answers.
func (p *Process) Alive() bool {
	select {
	case <-p.done:
		return false
	default:
	}
	return p.healthy()
}

// Stop sends SIGTERM to the process and waits for it to exit, at most the
// stop bound (10 s unless StopWithin says otherwise); past it the process is
// killed. It returns nil only for exit status 0 within the bound; later calls
// return the same without signalling again. The test's cleanup stops the
// process too, and fails the test on an error nobody asked Stop for.
func (p *Process) Stop() error {
	p.told.Store(true)
	return p.stopOnce()
}

func (p *Process) stopOnce() error {
	p.once.Do(func() {
		select {
		case <-p.done:
			p.stop = fmt.Errorf("pid %d exited by itself before it was stopped: %s", p.PID, p.status())
			return
		default:
		}
		start := time.Now()
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			p.stop = fmt.Errorf("SIGTERM to pid %d: %w", p.PID, err)
		}
		select {
		case <-p.done:
			if p.stop == nil && p.err != nil {
				p.stop = fmt.Errorf("pid %d after SIGTERM (%s): %s", p.PID, time.Since(start).Round(time.Millisecond), p.status())
			}
		case <-time.After(p.within):
			_ = p.cmd.Process.Kill()
			<-p.done
			p.stop = fmt.Errorf("pid %d did not exit within %s of SIGTERM; killed", p.PID, p.within)
		}
	})
	return p.stop
}

// status says how the process ended (after done closed).
func (p *Process) status() string {
	if p.err == nil {
		return "exit status 0"
	}
	return p.err.Error()
}

// Log is what the process wrote to stdout and stderr so far (the first MiB).
func (p *Process) Log() string { return p.log.String() }

// Sum scrapes the process's /metrics and adds up the samples of family
// (counters and gauges) whose labels include every pair of labels; it fails
// the test when the scrape fails.
func (p *Process) Sum(t testing.TB, family string, labels map[string]string) float64 {
	t.Helper()
	resp, err := healthClient.Get("http://" + p.Admin + "/metrics")
	if err != nil {
		t.Fatalf("%s: scraping /metrics: %v", p.Name, err)
	}
	defer resp.Body.Close()
	fams, err := ParseMetrics(resp.Body)
	if err != nil {
		t.Fatalf("%s: /metrics: %v", p.Name, err)
	}
	return metricread.SumFamilies(fams, family, labels)
}

// ParseMetrics reads the Prometheus text exposition format, as /metrics
// serves it.
func ParseMetrics(r io.Reader) ([]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	return slices.Collect(maps.Values(fams)), err
}

// capBuffer keeps the first max bytes written to it and counts the rest.
type capBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	max     int
	dropped int
}

func (c *capBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	room := c.max - c.b.Len()
	if room < len(p) {
		if room > 0 {
			c.b.Write(p[:room])
		}
		c.dropped += len(p) - max(room, 0)
		return len(p), nil
	}
	c.b.Write(p)
	return len(p), nil
}

func (c *capBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dropped > 0 {
		return fmt.Sprintf("%s\n[%d more bytes not kept]", c.b.String(), c.dropped)
	}
	return c.b.String()
}
