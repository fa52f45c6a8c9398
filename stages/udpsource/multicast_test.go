package udpsource

import (
	"os"
	"os/exec"
	"testing"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// TestMulticastTwoReceivers: one udp-sink to a group, two udp-sources that
// joined it; each receives every packet and names the stream.
func TestMulticastTwoReceivers(t *testing.T) {
	if !testrun.InNetns(t, "TestMulticastTwoReceivers") {
		return
	}
	testrun.MulticastOnLo(t)
	multicastPair(t, "239.7.7.7:15222", "")
	// and with the interface named on both sides
	multicastPair(t, "239.7.7.8:15223", "lo")
}

// TestMulticastIPv6: the same over an IPv6 group on lo.
func TestMulticastIPv6(t *testing.T) {
	if !testrun.InNetns(t, "TestMulticastIPv6") {
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
	testrun.IP(t, "link", "set", "mp1", "up")
	testrun.IP(t, "link", "set", "mp0", "up")
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
