package testrun

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// netnsEnv marks the copy of a test binary that InNetns runs inside the
// network namespace it creates: "mnt" when it also has a mount namespace
// of its own (see privateNetnsDir), "1" when not.
const netnsEnv = "MEDIAPIPE_TEST_IN_NETNS"

// netnsDir is where ip netns add names namespaces.
const netnsDir = "/run/netns"

// InNetns re-runs test name of this test binary inside a fresh network
// namespace (unshare -n), where multicast on lo touches nothing else, and
// passes, skips or fails t as that run did. It reports whether the caller
// is the copy inside, which should run the test. Without unshare(1), ip(8)
// or the right to make a namespace, it skips t.
//
// Where it may, the copy also gets a mount namespace of its own (unshare
// -m, private propagation) with a tmpfs of its own on /run/netns: the
// namespaces it names with ip netns add then go with it even when it is
// killed, instead of staying on the host's /run/netns. The copy is killed
// when this process dies (a -timeout, a kill) and shortly before t's
// deadline, so its log still shows.
func InNetns(t *testing.T, name string) bool {
	t.Helper()
	if mode := os.Getenv(netnsEnv); mode != "" {
		if mode == "mnt" {
			if err := privateNetnsDir(); err != nil {
				t.Logf("no private %s (ip netns names would outlive a killed run): %v", netnsDir, err)
			}
		}
		return true
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("needs unshare(1) to make a network namespace; not found")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip(8) to set up lo in the namespace; not found")
	}
	args, mode := []string{"-n", "-m", "--propagation", "private"}, "mnt"
	if exec.Command(unshare, append(args, "true")...).Run() != nil {
		args, mode = []string{"-n"}, "1"
		if out, err := exec.Command(unshare, "-n", "true").CombinedOutput(); err != nil {
			t.Skipf("cannot create a network namespace here (needs root or user namespaces): %v: %s", err, bytes.TrimSpace(out))
		}
	}
	ctx := context.Background()
	if deadline, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		margin := min(10*time.Second, time.Until(deadline)/10) // time to log what it said
		ctx, cancel = context.WithDeadline(ctx, deadline.Add(-margin))
		defer cancel()
	}
	args = append(args, "--", os.Args[0], "-test.run=^"+name+"$", "-test.v", "-test.count=1")
	cmd := exec.CommandContext(ctx, unshare, args...)
	cmd.Env = append(os.Environ(), netnsEnv+"="+mode)
	// unshare execs the test binary, which keeps the death signal.
	cmd.SysProcAttr = procAttr()
	out, err := cmd.CombinedOutput()
	t.Logf("inside the namespace:\n%s", out)
	switch {
	case ctx.Err() != nil:
		t.Fatalf("test in namespace killed near the test's deadline: %v", err)
	case err != nil:
		t.Fatalf("test in namespace failed: %v", err)
	case bytes.Contains(out, []byte("--- SKIP: "+name)):
		t.Skip("skipped inside the namespace (see log)")
	case !bytes.Contains(out, []byte("--- PASS: "+name)):
		t.Fatal("test did not run inside the namespace")
	}
	return false
}

// ClearStaleNetns deletes the named network namespaces (ip netns) called
// prefix + PID + "-…" whose PID no longer runs: what an earlier run of the
// test that names its namespaces so left when it was killed before its
// cleanups. Names of running processes and any other names are left alone.
func ClearStaleNetns(t testing.TB, prefix string) {
	t.Helper()
	entries, err := os.ReadDir(netnsDir)
	if err != nil {
		return // none named yet
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		pidText, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 || processRuns(pid) {
			continue
		}
		if out, err := exec.Command("ip", "netns", "del", e.Name()).CombinedOutput(); err != nil {
			t.Logf("stale namespace %s left: ip netns del: %v: %s", e.Name(), err, bytes.TrimSpace(out))
			continue
		}
		t.Logf("deleted stale namespace %s (process %d is gone)", e.Name(), pid)
	}
}

// processRuns reports whether pid is a running process (not a zombie).
func processRuns(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		return true // cannot tell: leave its names alone
	}
	// pid (comm) state …: comm may hold spaces and parentheses.
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z'
	}
	return true
}

// IP runs ip(8) with args, failing t if it fails.
func IP(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// MulticastOnLo brings lo up with multicast and routes 224.0.0.0/4 over it
// from 127.0.0.1 (without src the kernel sends multicast on lo from
// 0.0.0.0). Only inside a namespace of InNetns.
func MulticastOnLo(t testing.TB) {
	t.Helper()
	IP(t, "link", "set", "lo", "up")
	IP(t, "link", "set", "lo", "multicast", "on")
	IP(t, "route", "add", "224.0.0.0/4", "dev", "lo", "src", "127.0.0.1")
}
