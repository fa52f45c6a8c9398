package udpsink

import (
	"net"
	"slices"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// TestLiveMulticastDestination: a multicast group added by a reload is
// opened as at build (TTL, loopback, interface set before connecting): a
// receiver that joined the group gets every packet sent after the change,
// and none once a second change removes the group, while the unicast
// destination misses nothing throughout.
func TestLiveMulticastDestination(t *testing.T) {
	if !testrun.InNetns(t, "TestLiveMulticastDestination") {
		return
	}
	testrun.MulticastOnLo(t)
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
