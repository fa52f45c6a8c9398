package testrun

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// netnsEnv marks the copy of a test binary that InNetns runs inside the
// network namespace it creates.
const netnsEnv = "MEDIAPIPE_TEST_IN_NETNS"

// InNetns re-runs test name of this test binary inside a fresh network
// namespace (unshare -n), where multicast on lo touches nothing else, and
// passes, skips or fails t as that run did. It reports whether the caller
// is the copy inside, which should run the test. Without unshare(1), ip(8)
// or the right to make a namespace, it skips t.
func InNetns(t *testing.T, name string) bool {
	t.Helper()
	if os.Getenv(netnsEnv) != "" {
		return true
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("needs unshare(1) to make a network namespace; not found")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip(8) to set up lo in the namespace; not found")
	}
	if out, err := exec.Command(unshare, "-n", "true").CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace here (needs root or user namespaces): %v: %s", err, bytes.TrimSpace(out))
	}
	cmd := exec.Command(unshare, "-n", "--", os.Args[0], "-test.run=^"+name+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("inside the namespace:\n%s", out)
	switch {
	case err != nil:
		t.Fatalf("test in namespace failed: %v", err)
	case bytes.Contains(out, []byte("--- SKIP: "+name)):
		t.Skip("skipped inside the namespace (see log)")
	case !bytes.Contains(out, []byte("--- PASS: "+name)):
		t.Fatal("test did not run inside the namespace")
	}
	return false
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
