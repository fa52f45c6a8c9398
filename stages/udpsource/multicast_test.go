package udpsource

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// netnsEnv marks the copy of the test binary running inside the network
// namespace that runInNetns creates.
const netnsEnv = "MEDIAPIPE_UDP_IN_NETNS"

// runInNetns re-runs test name of this binary inside a fresh network
// namespace (unshare -n), where multicast on lo touches nothing else.
// It reports whether the caller is already inside and should run the test.
func runInNetns(t *testing.T, name string) bool {
	t.Helper()
	if os.Getenv(netnsEnv) != "" {
		return true
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("multicast test needs unshare(1) to make a network namespace; not found")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("multicast test needs ip(8) to set up lo in the namespace; not found")
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

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// TestMulticastTwoReceivers: one udp-sink to a group, two udp-sources that
// joined it; each receives every packet and names the stream.
func TestMulticastTwoReceivers(t *testing.T) {
	if !runInNetns(t, "TestMulticastTwoReceivers") {
		return
	}
	ip(t, "link", "set", "lo", "up")
	ip(t, "link", "set", "lo", "multicast", "on")
	// src: without it the kernel sends multicast on lo from 0.0.0.0.
	ip(t, "route", "add", "224.0.0.0/4", "dev", "lo", "src", "127.0.0.1")
	multicastPair(t, "239.7.7.7:15222", "")
	// and with the interface named on both sides
	multicastPair(t, "239.7.7.8:15223", "lo")
}

// TestMulticastIPv6: the same over an IPv6 group on lo.
func TestMulticastIPv6(t *testing.T) {
	if !runInNetns(t, "TestMulticastIPv6") {
		return
	}
	// IPv6 multicast does not loop back on lo here; a veth pair has what it
	// needs (link-local addresses, ff00::/8 routes). No DAD: usable at once.
	if err := os.WriteFile("/proc/sys/net/ipv6/conf/default/accept_dad", []byte("0"), 0); err != nil {
		t.Skipf("cannot turn off IPv6 DAD in the namespace: %v", err)
	}
	if out, err := exec.Command("ip", "link", "add", "mp0", "type", "veth", "peer", "name", "mp1").CombinedOutput(); err != nil {
		t.Skipf("cannot make a veth pair: %v: %s", err, out)
	}
	ip(t, "link", "set", "mp1", "up")
	ip(t, "link", "set", "mp0", "up")
	multicastPair(t, "[ff15::7]:15224", "mp0")
}

func multicastPair(t *testing.T, group, ifname string) {
	a := startSource(t, map[string]any{"listen": group, "interface": ifname})
	b := startSource(t, map[string]any{"listen": group, "interface": ifname})
	k := startSinkRaw(t, map[string]any{"destinations": []any{group}, "interface": ifname})
	st := k.h.StartStream("live/mc")
	sent := send(t, k, st, 0x5eed, 100, 1500, a, b)
	k.h.EndStream(st)
	for i, src := range []*srcH{a, b} {
		testrun.Eventually(t, waitFor, "end at receiver", func() bool { return countEvents(src.h.Out, core.EventEnd) == 1 })
		got := src.h.Out.Packets()
		if got[0].Event != core.EventStart || got[0].Stream.Name != "live/mc" {
			t.Fatalf("receiver %d: first packet %v", i, got[0].Event)
		}
		checkData(t, got, got[0].Stream, sent)
	}
}
