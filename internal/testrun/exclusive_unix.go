//go:build unix

package testrun

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Exclusive keeps the test from running beside another Exclusive test in
// any package's test binary (go test runs packages in parallel): the
// timing tests (the SR backend's deadlines) and the CPU-hungry ones
// (a headless browser decoding video) take it, so neither fails the
// other on a 2-core machine. Held until the test's cleanup.
func Exclusive(t testing.TB) {
	t.Helper()
	path := filepath.Join(os.TempDir(), "mediapipe-tests-exclusive.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatalf("exclusive: %v", err)
	}
	start := time.Now()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("exclusive: lock %s: %v", path, err)
	}
	if waited := time.Since(start); waited > time.Second {
		t.Logf("waited %v for another package's exclusive test", waited.Round(time.Second))
	}
	t.Cleanup(func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	})
}
