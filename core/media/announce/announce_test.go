package announce

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/mediapipe/mediapipe/core/media/rtpheader"
)

func mustRTP(t testing.TB, p rtp.Packet) []byte {
	t.Helper()
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rtpCase is one datagram with what Classify and rtpheader.Check must say of it.
type rtpCase struct {
	name       string
	b          []byte
	kind       Kind
	err        error
	start, end int
}

func rtpCases(t testing.TB) []rtpCase {
	plain := mustRTP(t, rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 100, SequenceNumber: 7, Timestamp: 9, SSRC: 0xdeadbeef}, Payload: make([]byte, 100)})
	marker := mustRTP(t, rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, PayloadType: 127, SSRC: 1}, Payload: []byte{1}})
	csrc := mustRTP(t, rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, CSRC: []uint32{1, 2}}, Payload: []byte{1, 2, 3}})
	extHdr := rtp.Header{Version: 2, PayloadType: 96}
	if err := extHdr.SetExtension(1, []byte{1, 2}); err != nil {
		t.Fatal(err)
	}
	ext := mustRTP(t, rtp.Packet{Header: extHdr, Payload: []byte{9}})
	pad := mustRTP(t, rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, Padding: true}, Payload: []byte{1, 2, 3}, PaddingSize: 5})
	badPad := append([]byte(nil), plain...)
	badPad[0] |= 0x20
	badPad[len(badPad)-1] = 200
	zeroPad := append([]byte(nil), plain...)
	zeroPad[0] |= 0x20
	zeroPad[len(zeroPad)-1] = 0
	badCSRC := append([]byte(nil), plain[:20]...)
	badCSRC[0] |= 0x0f
	badExt := append([]byte(nil), plain[:16]...)
	badExt[0] |= 0x10
	badExt[14], badExt[15] = 0xff, 0xff
	v1 := append([]byte(nil), plain...)
	v1[0] = 0x40
	sr, _ := AppendAnnounce(nil, Sender{SSRC: 5}, "c", "live/x")
	return []rtpCase{
		{name: "plain", b: plain, kind: RTP, start: 12, end: 112},
		{name: "marker pt127", b: marker, kind: RTP, start: 12, end: 13},
		{name: "two csrc", b: csrc, kind: RTP, start: 20, end: 23},
		{name: "extension", b: ext, kind: RTP, start: len(ext) - 1, end: len(ext)},
		{name: "padding", b: pad, kind: RTP, start: 12, end: 15},
		{name: "padding longer than payload", b: badPad, kind: RTP, err: rtpheader.ErrPadding},
		{name: "zero padding", b: zeroPad, kind: RTP, err: rtpheader.ErrPadding},
		{name: "csrc past end", b: badCSRC, kind: RTP, err: rtpheader.ErrCSRC},
		{name: "extension past end", b: badExt, kind: RTP, err: rtpheader.ErrExtension},
		{name: "version 1", b: v1, kind: Junk, err: rtpheader.ErrVersion},
		{name: "short", b: plain[:11], kind: Junk, err: rtpheader.ErrShort},
		{name: "empty", b: nil, kind: Junk, err: rtpheader.ErrShort},
		{name: "rtcp sr", b: sr, kind: RTCP, start: 12, end: len(sr)}, // Check alone cannot tell
		{name: "text", b: []byte("GET / HTTP/1.1\r\n\r\n"), kind: Junk, err: rtpheader.ErrVersion},
	}
}

func TestClassify(t *testing.T) {
	for _, c := range rtpCases(t) {
		t.Run(c.name, func(t *testing.T) {
			if k := Classify(c.b); k != c.kind {
				t.Errorf("Classify = %v, want %v", k, c.kind)
			}
			start, end, err := rtpheader.Check(c.b)
			if !errors.Is(err, c.err) {
				t.Fatalf("Check err = %v, want %v", err, c.err)
			}
			if err == nil && (start != c.start || end != c.end) {
				t.Errorf("payload [%d:%d], want [%d:%d]", start, end, c.start, c.end)
			}
		})
	}
}

func TestAnnounceRoundTrip(t *testing.T) {
	now := time.Date(2026, 11, 25, 9, 0, 0, 500_000_000, time.UTC)
	s := Sender{SSRC: 0x11223344, NTP: NTP(now), RTPTime: 123456, Packets: 1000, Octets: 1_180_000}
	b, err := AppendAnnounce([]byte{0xaa}, s, "mediapipe@host", "live/movie")
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != 0xaa {
		t.Fatal("AppendAnnounce overwrote dst")
	}
	b = b[1:]
	if Classify(b) != RTCP {
		t.Fatalf("announcement classified as %v", Classify(b))
	}
	var r Report
	if err := Parse(b, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Senders) != 1 || r.Senders[0] != s {
		t.Errorf("senders = %+v, want %+v", r.Senders, s)
	}
	want := Naming{SSRC: s.SSRC, CNAME: "mediapipe@host", Name: "live/movie"}
	if len(r.Names) != 1 || r.Names[0] != want {
		t.Errorf("names = %+v, want %+v", r.Names, want)
	}
	if len(r.Byes) != 0 {
		t.Errorf("byes = %v", r.Byes)
	}
	// NTP: upper half is seconds since 1900, lower half the fraction.
	if got := s.NTP >> 32; got != uint64(now.Unix())+ntpEpochOffset {
		t.Errorf("NTP seconds %d", got)
	}
	if frac := uint32(s.NTP); frac < 1<<31-1000 || frac > 1<<31+1000 {
		t.Errorf("NTP fraction %d, want about 2^31", frac)
	}
}

func TestByeRoundTrip(t *testing.T) {
	b, err := AppendBye(nil, 42, "stream ended")
	if err != nil {
		t.Fatal(err)
	}
	var r Report
	if err := Parse(b, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Byes) != 1 || r.Byes[0] != 42 || len(r.Names) != 0 {
		t.Fatalf("report %+v", r)
	}
}

func TestAnnounceRefusesBadNames(t *testing.T) {
	for _, name := range []string{"", strings.Repeat("a", 256), "live/\x00x", "bad\xff"} {
		if _, err := AppendAnnounce(nil, Sender{}, "c", name); err == nil {
			t.Errorf("name %q accepted", name)
		}
	}
	if _, err := AppendAnnounce(nil, Sender{}, "", "live/x"); err == nil {
		t.Error("empty CNAME accepted")
	}
}

func TestParseRejects(t *testing.T) {
	var r Report
	for _, c := range rtpCases(t) {
		if c.kind == RTCP {
			continue
		}
		if err := Parse(c.b, &r); err == nil {
			t.Errorf("%s: Parse accepted a non-RTCP datagram", c.name)
		}
	}
	sr, _ := AppendAnnounce(nil, Sender{SSRC: 1}, "c", "live/x")
	if err := Parse(sr[:len(sr)-3], &r); err == nil {
		t.Error("truncated compound packet accepted")
	}
}

func BenchmarkClassify(b *testing.B) {
	cases := rtpCases(b)
	b.ReportAllocs()
	for b.Loop() {
		for _, c := range cases {
			Classify(c.b)
			_, _, _ = rtpheader.Check(c.b)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, c := range rtpCases(f) {
		f.Add(c.b)
	}
	bye, _ := AppendBye(nil, 9, "x")
	f.Add(bye)
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Report
		_ = Parse(b, &r)
	})
}

// TestAnnounceMatchesPion: the hand-written SR+SDES is byte for byte what
// pion's rtcp.Marshal makes, at every padding the name lengths give.
func TestAnnounceMatchesPion(t *testing.T) {
	s := Sender{SSRC: 0xdeadbeef, NTP: 0x0102030405060708, RTPTime: 0x11223344, Packets: 0x55667788, Octets: 0x99aabbcc}
	for _, cn := range []string{"c", "ab", "mediapipe@host", strings.Repeat("c", MaxNameLen)} {
		for n := 1; n <= MaxNameLen; n++ {
			name := strings.Repeat("n", n)
			want, err := rtcp.Marshal([]rtcp.Packet{
				&rtcp.SenderReport{SSRC: s.SSRC, NTPTime: s.NTP, RTPTime: s.RTPTime, PacketCount: s.Packets, OctetCount: s.Octets},
				&rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{Source: s.SSRC, Items: []rtcp.SourceDescriptionItem{
					{Type: rtcp.SDESCNAME, Text: cn}, {Type: rtcp.SDESName, Text: name},
				}}}},
			})
			if err != nil {
				t.Fatal(err)
			}
			got, err := AppendAnnounce([]byte{0xaa}, s, cn, name)
			if err != nil || !bytes.Equal(got[1:], want) || got[0] != 0xaa {
				t.Fatalf("cname %d B, name %d B: err %v\ngot  %x\nwant %x", len(cn), n, err, got[1:], want)
			}
		}
	}
}

// TestAnnounceDoesNotAllocate: udp-sink announces every stream every second.
func TestAnnounceDoesNotAllocate(t *testing.T) {
	buf := make([]byte, 0, 1500)
	if a := testing.AllocsPerRun(100, func() {
		buf, _ = AppendAnnounce(buf[:0], Sender{SSRC: 7}, "mediapipe@host", "live/movie")
	}); a != 0 {
		t.Fatalf("%v allocs per announcement", a)
	}
}

func TestNTPTimeRoundTrip(t *testing.T) {
	for _, s := range []int64{0, 1_700_000_000, 2_000_000_000} {
		want := time.Unix(s, 123_456_789)
		if got := NTPTime(NTP(want)); got.Sub(want).Abs() > time.Microsecond {
			t.Errorf("NTPTime(NTP(%v)) = %v", want, got)
		}
	}
}
