package udpsource

import (
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/announce"
	"github.com/mediapipe/mediapipe/core/media/rtpheader"
	"github.com/mediapipe/mediapipe/core/stagetest"
)

// offline builds a stage with its batch slots but no socket, for driving
// process directly.
func offline(t testing.TB) (*Stage, *stagetest.FakeClock) {
	t.Helper()
	var cfg Config
	stagetest.Decode(t, "udp-source", map[string]any{"listen": "127.0.0.1:0", "batch": int64(8)}, &cfg)
	return offlineWith(core.TestEnv("udp-source"), &cfg)
}

// offlineWith is offline on a given env and config, which a fuzz target
// builds once: a fresh metrics registry per exec cost most of its time.
func offlineWith(env *core.Env, cfg *Config) (*Stage, *stagetest.FakeClock) {
	clock := stagetest.NewFakeClock(time.Unix(1_700_000_000, 0))
	env.Clock = clock
	s := newStage(cfg, env)
	s.initSlots()
	return s, clock
}

// deliver plays the kernel: copies datagrams into the slots and processes them.
func deliver(s *Stage, out core.Output, datagrams ...[]byte) {
	for len(datagrams) > 0 {
		n := min(len(datagrams), len(s.msgs))
		for i, d := range datagrams[:n] {
			k := copy(s.msgs[i].Buffers[0], d)
			copy(s.msgs[i].Buffers[1], d[k:])
			s.msgs[i].N = len(d)
		}
		s.process(n, out)
		datagrams = datagrams[n:]
	}
}

// BenchmarkProcess is the stage's own CPU per datagram, the syscall left
// out: classify, check, look up the SSRC, emit.
func BenchmarkProcess(b *testing.B) {
	s, _ := offline(b)
	out := &countingOutput{}
	ann, _ := announce.AppendAnnounce(nil, announce.Sender{SSRC: 5}, "c", "live/bench")
	pkt := rtpPacket(b, 100, 5, 1, 1, 1188)
	deliver(s, out, ann, pkt) // the stream starts with its first RTP
	for i := range s.msgs {
		copy(s.msgs[i].Buffers[0], pkt)
		s.msgs[i].N = len(pkt)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(s.msgs) {
		for j := range s.msgs { // refilled slots are fresh pool buffers
			copy(s.msgs[j].Buffers[0], pkt)
		}
		s.process(len(s.msgs), out)
	}
}

// FuzzDatagram: any bytes, after a named stream exists, never panic, never
// start a stream without an SDES, and never emit a packet of the wrong type.
func FuzzDatagram(f *testing.F) {
	ann, _ := announce.AppendAnnounce(nil, announce.Sender{SSRC: 5}, "c", "live/x")
	bye, _ := announce.AppendBye(nil, 5, "")
	f.Add(rtpPacket(f, 100, 5, 1, 1, 10))
	f.Add(rtpPacket(f, 100, 6, 1, 1, 10))
	f.Add(rtpPacket(f, 101, 5, 1, 1, 10))
	f.Add(ann)
	f.Add(bye)
	f.Add([]byte{0x80, 200, 0, 1})
	var cfg Config
	stagetest.Decode(f, "udp-source", map[string]any{"listen": "127.0.0.1:0", "batch": int64(8)}, &cfg)
	env := core.TestEnv("udp-source")
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > maxDatagram {
			return
		}
		s, clock := offlineWith(env, &cfg)
		out := stagetest.NewCollector()
		deliver(s, out, ann, b, b)
		clock.Advance(10 * time.Second)
		s.housekeep(clock.Now(), out)
		if s.pendingCount() != 0 || s.held != 0 {
			t.Fatalf("after the hold: %d pending SSRCs, %d packets held", s.pendingCount(), s.held)
		}
		for _, p := range out.Packets() {
			if p.Event == core.EventData {
				if announce.Classify(p.Data) != announce.RTP || rtpheader.PayloadType(p.Data) != 100 {
					t.Fatalf("emitted a non-RTP or wrong-PT datagram %x", p.Data)
				}
			}
			if p.Event == core.EventStart && p.Stream.Name != "live/x" && !isAnnounce(b) {
				t.Fatalf("stream %q started without an SDES", p.Stream.Name)
			}
		}
	})
}

func isAnnounce(b []byte) bool {
	var r announce.Report
	return announce.Parse(b, &r) == nil && len(r.Names) > 0
}

// TestHoldBounds: strangers can make the stage hold only so much, and only
// for unnamed_hold.
func TestHoldBounds(t *testing.T) {
	s, clock := offline(t)
	out := stagetest.NewCollector()
	var dgrams [][]byte
	for i := range 300 {
		for ssrc := range 20 {
			dgrams = append(dgrams, rtpPacket(t, 100, uint32(1000+ssrc), uint16(i), 0, 20))
		}
	}
	deliver(s, out, dgrams...)
	if s.pendingCount() != maxPending || s.held != maxHeldTotal {
		t.Fatalf("%d pending, %d held; want %d and %d", s.pendingCount(), s.held, maxPending, maxHeldTotal)
	}
	if got, want := s.unnamed.Value(), float64(len(dgrams)-maxHeldTotal); got != want {
		t.Fatalf("unnamed_ssrc = %v before the hold ends, want %v", got, want)
	}
	clock.Advance(2 * time.Second)
	s.housekeep(clock.Now(), out)
	if s.pendingCount() != 0 || s.held != 0 || len(s.sources) != 0 {
		t.Fatalf("after the hold: %d pending, %d held, %d sources", s.pendingCount(), s.held, len(s.sources))
	}
	if got := s.unnamed.Value(); got != float64(len(dgrams)) {
		t.Fatalf("unnamed_ssrc = %v, want %d", got, len(dgrams))
	}
	if n := len(out.Packets()); n != 0 {
		t.Fatalf("%d packets emitted for strangers", n)
	}
}
