// Package plugintest runs sr-enhancer with a real SR backend plugin (the
// sr-sharpen example) through the plugin bridge.
package plugintest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
	_ "github.com/mediapipe/mediapipe/plugins/bridge"
	_ "github.com/mediapipe/mediapipe/stages/srenhancer"
	"github.com/mediapipe/mediapipe/stages/srenhancer/internal/srtest"
)

var (
	binDir   string
	buildMu  sync.Mutex
	binaries = map[string]string{}
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sr-plugintest")
	if err != nil {
		panic(err)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// plugin builds the example plugin named name once per test binary.
func plugin(t *testing.T, name string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if bin, ok := binaries[name]; ok {
		return bin
	}
	bin := filepath.Join(binDir, name)
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/mediapipe/mediapipe/plugins/examples/"+name).CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", name, err, out)
	}
	binaries[name] = bin
	return bin
}

func TestSharpenPlugin(t *testing.T) {
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{}))
	bin := plugin(t, "sr-sharpen")
	r := srtest.Run(t, map[string]any{"backend": "plugin", "path": bin}, tags)
	srtest.CheckClean(t, r.File, 1280, 720)
	srtest.CheckStream(t, tags, r, 1280, 720)
	_, keys, _ := srtest.Kinds(tags)
	if got := r.Counter("backend_enhanced"); got != float64(keys) {
		t.Errorf("backend_enhanced = %v, want %d (failures %v)", got, keys, r.Drops("backend_failure"))
	}
}

// TestSharpenPluginKilled kills the backend plugin mid-stream: sr-enhancer
// must go on at 1280x720 (the keyframes meanwhile upscaled conventionally),
// the bridge must start the plugin again, and the restart must be counted in
// the stage's metrics.
func TestSharpenPluginKilled(t *testing.T) {
	testrun.Exclusive(t) // the restarted plugin must answer within a GOP's budget
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{Seconds: 6}))
	bin := plugin(t, "sr-sharpen")
	killed := make(chan int, 1)
	go func() {
		defer close(killed)
		time.Sleep(2 * time.Second)
		for _, st := range testmedia.ChildProcs("sr-sharpen") {
			pid, err := strconv.Atoi(strings.Split(st, "/")[2])
			if err == nil && syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed <- pid
				return
			}
		}
	}()
	r := srtest.RunRealtime(t, map[string]any{"backend": "plugin", "path": bin}, tags)
	pid, ok := <-killed
	if !ok {
		t.Fatal("no sr-sharpen process was running 2 s into the stream")
	}
	srtest.CheckClean(t, r.File, 1280, 720)
	srtest.CheckStream(t, tags, r, 1280, 720)
	if got := r.Counter("backend_restarts"); got < 1 {
		t.Errorf("backend_restarts = %v after kill -9 of pid %d, want at least 1", got, pid)
	}
	_, keys, _ := srtest.Kinds(tags)
	// The kill falls between keyframes and the restart takes ~50 ms, so at
	// most the keyframe in flight at the kill is upscaled conventionally:
	// counted as a failure, or as too slow when the wait for the restarted
	// plugin put the stream behind.
	enhanced, failed, slow := r.Counter("backend_enhanced"), r.Drops("backend_failure"), r.Drops("backend_too_slow")
	if enhanced < float64(keys-1) || enhanced+failed+slow < float64(keys) {
		t.Errorf("backend_enhanced = %v, backend_failure = %v, backend_too_slow = %v of %d keyframes: the plugin did not come back", enhanced, failed, slow, keys)
	}
}
