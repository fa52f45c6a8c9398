package udpsink

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// netnsEnv marks the copy of the test binary running inside the network
// namespace that runInNetns creates (as udp-source's multicast tests do).
const netnsEnv = "MEDIAPIPE_UDPSINK_IN_NETNS"

// runInNetns re-runs test name of this binary inside a fresh network
// namespace (unshare -n), where multicast on lo touches nothing else. It
// reports whether the caller is already inside and should run the test.
func runInNetns(t *testing.T, name string) bool {
	t.Helper()
	if os.Getenv(netnsEnv) != "" {
		return true
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("multicast test needs unshare(1); not found")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("multicast test needs ip(8); not found")
	}
	if out, err := exec.Command(unshare, "-n", "true").CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace here: %v: %s", err, bytes.TrimSpace(out))
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

// TestLiveMulticastDestination: a multicast group added by a reload is
// opened as at build (TTL, loopback, interface set before connecting): a
// receiver that joined the group gets every packet sent after the change,
// and none once a second change removes the group, while the unicast
// destination misses nothing throughout.
func TestLiveMulticastDestination(t *testing.T) {
	if !runInNetns(t, "TestLiveMulticastDestination") {
		return
	}
	ip(t, "link", "set", "lo", "up")
	ip(t, "link", "set", "lo", "multicast", "on")
	ip(t, "route", "add", "224.0.0.0/4", "dev", "lo", "src", "127.0.0.1")
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	const group = "239.9.9.9:15230"
	gaddr, _ := net.ResolveUDPAddr("udp4", group)
	mc, err := net.ListenMulticastUDP("udp4", lo, gaddr)
	if err != nil {
		t.Fatal(err)
	}
	rxGroup := newReceiver(t, mc)
	uni := listen(t)
	rxUni := newReceiver(t, uni)

	def, _ := core.Default.Lookup("udp-sink")
	env := core.TestEnv("udp-sink")
	env.Clock = stagetest.NewFakeClock(time.Unix(1_700_000_000, 0))
	raw := map[string]any{"destinations": []any{uni.LocalAddr().String()}, "interface": "lo"}
	st, err := def.Build(raw, env)
	if err != nil {
		t.Fatal(err)
	}
	h := stagetest.Start(t, st, env, false)
	s := h.StartStream("live/group")
	next := 0
	send := func(n int) {
		for range n {
			h.SendData(s, 0, uint32(next), rtpPacket(t, 0x600d, uint16(next), uint32(next), 500))
			next++
		}
		want := next
		testrun.Eventually(t, 5*time.Second, "the unicast destination caught up", func() bool { return rxUni.count() >= want })
	}
	send(50)
	raw["destinations"] = []any{uni.LocalAddr().String(), group}
	if err := def.Reconfigure(st, raw); err != nil {
		t.Fatal(err)
	}
	joined := next
	send(50)
	testrun.Eventually(t, 5*time.Second, "the group got the packets sent after the change", func() bool { return rxGroup.count() >= next-joined })
	raw["destinations"] = []any{uni.LocalAddr().String()}
	if err := def.Reconfigure(st, raw); err != nil {
		t.Fatal(err)
	}
	left := next
	send(50)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	seqs, _ := rxUni.got()
	if first, n := contiguous(t, "unicast", seqs); first != 0 || n != next {
		t.Fatalf("unicast got %d from %d, want all %d", n, first, next)
	}
	seqs, names := rxGroup.got()
	if first, n := contiguous(t, "group", seqs); first != joined || first+n != left {
		t.Fatalf("group got seqs %d … %d, want %d … %d", first, first+n-1, joined, left-1)
	}
	if !slices.Contains(names, "live/group") {
		t.Errorf("the group was never told the stream's name (SDES %v)", names)
	}
}
