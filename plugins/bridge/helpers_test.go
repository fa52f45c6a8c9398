package bridge

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// bins are the example plugins and test programs, built once per test binary.
var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

var programs = map[string]string{
	"stream-filter":     "../examples/stream-filter",
	"sr-sharpen":        "../examples/sr-sharpen",
	"policy-worst-loss": "../examples/policy-worst-loss",
	"badpolicy":         "./testdata/badpolicy",
	"otherversion":      "./testdata/otherversion",
	"source":            "./testdata/source",
	"slow":              "./testdata/slow",
	"inplace":           "./testdata/inplace",
	"hangsr":            "./testdata/hangsr",
}

func TestMain(m *testing.M) {
	code := m.Run()
	Shutdown()
	testrun.RemoveBinary() // the mediapipe isolated stages ran in
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// bin returns the path of a built program.
func bin(t testing.TB, name string) string {
	t.Helper()
	binOnce.Do(func() {
		touchSources()
		binDir, binErr = os.MkdirTemp("", "mediapipe-plugins-")
		if binErr != nil {
			return
		}
		for n, pkg := range programs {
			args := []string{"build", "-o", filepath.Join(binDir, n)}
			if raceEnabled {
				args = append(args, "-race")
			}
			cmd := exec.Command("go", append(args, pkg)...)
			if out, err := cmd.CombinedOutput(); err != nil {
				binErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, name)
}

// copyBin copies the built program name into dir and returns its path there.
func copyBin(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(bin(t, name))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// alive reports whether a process with pid exists (zombies count).
func alive(pid int) bool {
	return pid > 0 && syscall.Kill(pid, 0) == nil
}

// waitGone waits until pid is reaped.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("plugin process %d is still there", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// noneLive fails t if a plugin process this package started is still
// running after what the test did.
func noneLive(t *testing.T, after string) {
	t.Helper()
	liveMu.Lock()
	n := len(live)
	liveMu.Unlock()
	if n != 0 {
		t.Errorf("%d plugin processes left after %s", n, after)
	}
}

// logSink records log records for assertions.
type logSink struct {
	mu      sync.Mutex
	records []string
}

func (l *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (l *logSink) Handle(_ context.Context, r slog.Record) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	l.mu.Lock()
	l.records = append(l.records, b.String())
	l.mu.Unlock()
	return nil
}
func (l *logSink) WithAttrs(as []slog.Attr) slog.Handler { return &attrHandler{l, as} }
func (l *logSink) WithGroup(string) slog.Handler         { return l }

func (l *logSink) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.records...)
}

type attrHandler struct {
	*logSink
	attrs []slog.Attr
}

func (h *attrHandler) Handle(ctx context.Context, r slog.Record) error {
	r.AddAttrs(h.attrs...)
	return h.logSink.Handle(ctx, r)
}
func (h *attrHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &attrHandler{h.logSink, append(append([]slog.Attr{}, h.attrs...), as...)}
}

// testEnv is a stage env logging into sink.
func testEnv(sink *logSink) *core.Env {
	env := core.TestEnv("./stream-filter")
	if sink != nil {
		env.Log = slog.New(sink)
	}
	return env
}

// tag makes an FLV tag of typ with a body of n bytes derived from seq.
func tag(typ uint8, ts uint32, n int, seq int) []byte {
	body := make([]byte, n)
	for i := range body {
		body[i] = byte(seq*7 + i)
	}
	return flv.AppendTag(nil, typ, ts, body)
}

// startStage loads the plugin at path, builds its stage from raw and starts
// it in a harness (as a source when source).
func startStage(t *testing.T, path string, raw map[string]any, source bool) (*Stage, *stagetest.Harness, *core.Env) {
	t.Helper()
	def, err := load(t, path)
	if err != nil {
		t.Fatal(err)
	}
	env := testEnv(nil)
	st, err := def.Build(raw, env)
	if err != nil {
		t.Fatal(err)
	}
	return st.(*Stage), stagetest.Start(t, st, env, source), env
}

// videoFeed sends numbered video tags on one stream: tag i has timestamp i
// and a body of size bytes made from i, so each can be told apart.
type videoFeed struct {
	h    *stagetest.Harness
	s    *core.Stream
	size int
	next int // the number of the next tag
}

func (f *videoFeed) send(n int) {
	for range n {
		f.h.SendData(f.s, flv.TypeVideo, uint32(f.next), tag(flv.TypeVideo, uint32(f.next), f.size, f.next))
		f.next++
	}
}

// load is Load that stops the describing process when the test ends.
func load(t testing.TB, path string) (core.Definition, error) {
	t.Helper()
	def, err := Load(path)
	if err == nil {
		t.Cleanup(def.Close)
	}
	return def, err
}

// touchSources stats the Go files the plugins are built from, so go test's
// cache, which records the files a test looks at, is invalidated when they
// change (the builds run in child processes it cannot see).
func touchSources() {
	for _, root := range []string{"..", "../../core"} {
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(path, ".go") {
				_, _ = os.Stat(path)
			}
			return nil
		})
	}
}
