package testrun

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// netnsRole is which part of TestNetnsKilled a copy of the test binary
// plays: "parent" runs InNetns, whose copy inside names a namespace and
// waits to be killed.
const netnsRole = "MEDIAPIPE_TEST_NETNS_ROLE"

// TestNetnsKilled kills the process that ran InNetns while its copy in the
// namespace waits, holding a namespace named with ip netns add: the copy
// dies with it, and the name does not stay on the host's /run/netns.
func TestNetnsKilled(t *testing.T) {
	switch os.Getenv(netnsRole) {
	case "parent":
		if !InNetns(t, "TestNetnsKilled") {
			return
		}
		// The copy inside: name a namespace, say so, wait to be killed.
		name := fmt.Sprintf("mp17test-%d-e1", os.Getpid())
		IP(t, "netns", "add", name)
		dir := os.Getenv("MEDIAPIPE_TEST_NETNS_DIR")
		if err := os.WriteFile(filepath.Join(dir, "pid.tmp"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "pid.tmp"), filepath.Join(dir, "pid")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(WaitLimit) // a wait for the kill, not a synchronisation
		t.Fatal("not killed with its parent")
		return
	}
	if testing.Short() {
		t.Skip("starts a test binary in a namespace")
	}
	dir := t.TempDir()
	parent := exec.Command(os.Args[0], "-test.run=^TestNetnsKilled$", "-test.v", "-test.count=1")
	parent.Env = append(os.Environ(), netnsRole+"=parent", "MEDIAPIPE_TEST_NETNS_DIR="+dir)
	parent.SysProcAttr = procAttr()
	var out bytes.Buffer
	parent.Stdout, parent.Stderr = &out, &out
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- parent.Wait() }()
	pidFile := filepath.Join(dir, "pid")
	deadline := time.Now().Add(WaitLimit)
	for {
		if _, err := os.Stat(pidFile); err == nil {
			break
		}
		select {
		case err := <-exited:
			if strings.Contains(out.String(), "--- SKIP: TestNetnsKilled") {
				t.Skipf("no namespace here:\n%s", out.String())
			}
			t.Fatalf("parent ended (%v) before its copy in the namespace was up:\n%s", err, out.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = parent.Process.Kill()
			t.Fatalf("the copy in the namespace never came up:\n%s", out.String())
		}
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(string(b))
	if pid <= 0 || !processRuns(pid) {
		t.Fatalf("copy's PID %q not running", b)
	}
	_ = parent.Process.Kill()
	<-exited
	Eventually(t, WaitLimit, "the copy in the namespace to die with its parent", func() bool { return !processRuns(pid) })
	name := fmt.Sprintf("mp17test-%d-e1", pid)
	if _, err := os.Stat(filepath.Join(netnsDir, name)); err == nil {
		_ = exec.Command("ip", "netns", "del", name).Run()
		t.Fatalf("%s stayed on the host's %s after the run was killed", name, netnsDir)
	}
}

// TestClearStaleNetns: of names with the prefix, only those whose PID is
// gone are deleted; a running process's and other names stay. Run inside
// InNetns's private /run/netns, so nothing touches the host's.
func TestClearStaleNetns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a test binary in a namespace")
	}
	if !InNetns(t, "TestClearStaleNetns") {
		return
	}
	if os.Getenv(netnsEnv) != "mnt" {
		t.Skip("no private /run/netns here: the test would name namespaces on the host")
	}
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	dead, live := gone.Process.Pid, os.Getpid()
	names := map[string]bool{ // name: kept
		fmt.Sprintf("mp17x-%d-e1", dead): false,
		fmt.Sprintf("mp17x-%d-e1", live): true,
		fmt.Sprintf("other-%d-e1", dead): true,
		"mp17x-notapid-e1":               true,
	}
	for name := range names {
		IP(t, "netns", "add", name)
	}
	ClearStaleNetns(t, "mp17x-")
	for name, kept := range names {
		_, err := os.Stat(filepath.Join(netnsDir, name))
		if (err == nil) != kept {
			t.Errorf("%s: there %v, want %v", name, err == nil, kept)
		}
	}
}
