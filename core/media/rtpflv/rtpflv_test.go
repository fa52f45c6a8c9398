package rtpflv

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/pion/rtp"

	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/media/rtpheader"
)

// fragmentAll returns the packets f makes of tag, each in its own buffer.
func fragmentAll(t testing.TB, f *Fragmenter, tag []byte) [][]byte {
	t.Helper()
	h, err := flv.ParseHeader(tag) // no size check: some tests fragment lying tags
	if err != nil {
		t.Fatalf("test tag: %v", err)
	}
	var pkts [][]byte
	for off := 0; off < len(tag); {
		b := make([]byte, f.Size(len(tag), off))
		var n int
		n, off = f.Put(b, tag, off, h.Timestamp)
		if n != len(b) {
			t.Fatalf("Put wrote %d bytes, Size said %d", n, len(b))
		}
		pkts = append(pkts, b)
	}
	return pkts
}

func TestFragment(t *testing.T) {
	for _, c := range fragCases {
		t.Run(c.name, func(t *testing.T) {
			f, err := NewFragmenter(0xdeadbeef, c.seq, payloadType, c.maxPayload)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Count(len(c.tag)); got != c.packets {
				t.Errorf("Count = %d, want %d", got, c.packets)
			}
			pkts := fragmentAll(t, f, c.tag)
			if len(pkts) != c.packets {
				t.Fatalf("%d packets, want %d", len(pkts), c.packets)
			}
			hdr, _ := flv.ParseHeader(c.tag)
			var joined []byte
			for i, b := range pkts {
				// pion is the reference parser: the bytes must read the same there.
				var p rtp.Packet
				if err := p.Unmarshal(b); err != nil {
					t.Fatalf("packet %d: pion: %v", i, err)
				}
				last := i == len(pkts)-1
				if p.Version != 2 || p.Padding || p.Extension || len(p.CSRC) != 0 {
					t.Errorf("packet %d: header has extras: %+v", i, p.Header)
				}
				if p.Marker != last {
					t.Errorf("packet %d: marker %v, want %v", i, p.Marker, last)
				}
				if p.PayloadType != payloadType || p.SSRC != 0xdeadbeef || p.Timestamp != hdr.Timestamp {
					t.Errorf("packet %d: pt %d ssrc %x ts %d", i, p.PayloadType, p.SSRC, p.Timestamp)
				}
				if want := c.seq + uint16(i); p.SequenceNumber != want {
					t.Errorf("packet %d: seq %d, want %d", i, p.SequenceNumber, want)
				}
				if !last && len(p.Payload) != c.maxPayload {
					t.Errorf("packet %d: payload %d bytes, want exactly %d", i, len(p.Payload), c.maxPayload)
				}
				if len(p.Payload) == 0 || len(p.Payload) > c.maxPayload {
					t.Errorf("packet %d: payload %d bytes", i, len(p.Payload))
				}
				h, payload, err := rtpheader.Parse(b)
				if err != nil || h.Seq != p.SequenceNumber || h.Marker != p.Marker || !bytes.Equal(payload, p.Payload) {
					t.Errorf("packet %d: Parse disagrees with pion: %+v %v", i, h, err)
				}
				// Byte for byte what pion writes for the header the format
				// specifies: version 2, nothing optional, the tag bytes after.
				want, err := (&rtp.Packet{Header: rtp.Header{Version: 2, Marker: last, PayloadType: payloadType,
					SequenceNumber: c.seq + uint16(i), Timestamp: hdr.Timestamp, SSRC: 0xdeadbeef}, Payload: p.Payload}).Marshal()
				if err != nil || !bytes.Equal(b, want) {
					t.Errorf("packet %d: % x…, pion writes % x… (%v)", i, b[:rtpheader.Size], want[:min(len(want), rtpheader.Size)], err)
				}
				joined = append(joined, p.Payload...)
			}
			if !bytes.Equal(joined, c.tag) {
				t.Errorf("payloads do not join back into the tag")
			}
			if f.Seq != c.seq+uint16(c.packets) {
				t.Errorf("next seq %d, want %d", f.Seq, c.seq+uint16(c.packets))
			}
		})
	}
}

// TestFragmentInPlace: a one-packet tag may be marshalled over its own buffer.
func TestFragmentInPlace(t *testing.T) {
	tg := tag(flv.TypeAudio, 77, 300)
	f, _ := NewFragmenter(1, 2, 100, 1180)
	want := fragmentAll(t, &Fragmenter{SSRC: 1, Seq: 2, PayloadType: 100, MaxPayload: 1180}, tg)[0]
	buf := make([]byte, len(tg)+rtpheader.Size)
	copy(buf, tg)
	n, next := f.Put(buf, buf[:len(tg)], 0, 77)
	if next != len(tg) || !bytes.Equal(buf[:n], want) {
		t.Fatalf("in-place fragment differs")
	}
}

func TestNewFragmenterRefusesTinyPayload(t *testing.T) {
	if _, err := NewFragmenter(1, 1, 100, 10); err != ErrMaxPayload {
		t.Fatalf("err = %v", err)
	}
}

func TestReassembleCases(t *testing.T) {
	for _, c := range fragCases {
		t.Run(c.name, func(t *testing.T) {
			f := &Fragmenter{SSRC: 5, Seq: c.seq, PayloadType: 100, MaxPayload: c.maxPayload}
			var r Reassembler
			// two tags back to back: the second starts right after a marker
			for round := 0; round < 2; round++ {
				pkts := fragmentAll(t, f, c.tag)
				for i, p := range pkts {
					got := r.Push(p)
					if i < len(pkts)-1 && got != nil {
						t.Fatalf("round %d: tag emitted at fragment %d of %d", round, i, len(pkts))
					}
					if i == len(pkts)-1 && !bytes.Equal(got, c.tag) {
						t.Fatalf("round %d: reassembled tag differs (%d bytes, want %d)", round, len(got), len(c.tag))
					}
				}
			}
			if r.Drops != ([NumReasons]uint64{}) || r.Tags != 2 {
				t.Errorf("drops %v tags %d", r.Drops, r.Tags)
			}
		})
	}
}

// stream is a scripted sequence of tags fragmented by one Fragmenter.
type stream struct {
	tags [][]byte
	pkts [][]byte
	of   []int // tag index of each packet
}

func makeStream(t testing.TB, f *Fragmenter, tags ...[]byte) stream {
	t.Helper()
	s := stream{tags: tags}
	for i, tg := range tags {
		for _, p := range fragmentAll(t, f, tg) {
			s.pkts = append(s.pkts, p)
			s.of = append(s.of, i)
		}
	}
	return s
}

func drops(kv ...any) [NumReasons]uint64 {
	var d [NumReasons]uint64
	for i := 0; i < len(kv); i += 2 {
		d[kv[i].(Reason)] = uint64(kv[i+1].(int))
	}
	return d
}

func TestReassembleLoss(t *testing.T) {
	// tags: 0 one packet, 1 three packets, 2 one packet, 3 two packets, 4 one packet
	tags := [][]byte{tag(9, 10, 100), tag(9, 20, 500), tag(8, 30, 50), tag(9, 40, 300), tag(8, 50, 10)}
	// packet indexes: tag0: 0; tag1: 1,2,3; tag2: 4; tag3: 5,6; tag4: 7
	cases := []struct {
		name  string
		lose  []int
		want  []int // tags emitted
		drops [NumReasons]uint64
	}{
		{"no_loss", nil, []int{0, 1, 2, 3, 4}, drops()},
		{"lose_single_tag", []int{0}, []int{1, 2, 3, 4}, drops()},
		{"lose_first_fragment", []int{1}, []int{0, 2, 3, 4}, drops(OrphanFragment, 1)},
		{"lose_middle_fragment", []int{2}, []int{0, 2, 3, 4}, drops(MissingFragment, 1, OrphanFragment, 1)},
		{"lose_last_fragment", []int{3}, []int{0, 2, 3, 4}, drops(MissingFragment, 1)},
		{"lose_across_tags", []int{3, 4, 5}, []int{0, 4}, drops(MissingFragment, 1, OrphanFragment, 1)},
		{"lose_all_but_last", []int{0, 1, 2, 3, 4, 5, 6}, []int{4}, drops()},
		{"lose_first_packet_of_stream_only", []int{0, 1}, []int{2, 3, 4}, drops(OrphanFragment, 1)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := makeStream(t, &Fragmenter{SSRC: 9, Seq: 65533, PayloadType: 100, MaxPayload: 200}, tags...)
			if len(s.pkts) != 8 {
				t.Fatalf("script has %d packets, want 8", len(s.pkts))
			}
			lost := map[int]bool{}
			for _, i := range c.lose {
				lost[i] = true
			}
			var r Reassembler
			var got []int
			for i, p := range s.pkts {
				if lost[i] {
					continue
				}
				if tg := r.Push(p); tg != nil {
					if !bytes.Equal(tg, tags[s.of[i]]) {
						t.Fatalf("packet %d completed a tag that is not tag %d", i, s.of[i])
					}
					got = append(got, s.of[i])
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("emitted tags %v, want %v", got, c.want)
			}
			if r.Drops != c.drops {
				t.Errorf("drops %v, want %v", r.Drops, c.drops)
			}
		})
	}
}

func TestReassembleMisbehaviour(t *testing.T) {
	good := tag(9, 1, 500)
	oneGood := tag(8, 2, 30)
	frag := func(seq uint16, ssrc uint32, tg []byte) [][]byte {
		return fragmentAll(t, &Fragmenter{SSRC: ssrc, Seq: seq, PayloadType: 100, MaxPayload: 200}, tg)
	}
	// lie rewrites a tag's declared body size without changing its length.
	lie := func(tg []byte, size uint32) []byte {
		b := append([]byte(nil), tg...)
		b[1], b[2], b[3] = byte(size>>16), byte(size>>8), byte(size)
		return b
	}
	raw := func(seq uint16, marker bool, ts uint32, payload []byte) []byte {
		b := make([]byte, rtpheader.Size+len(payload))
		rtpheader.Put(b, rtpheader.Header{Marker: marker, PayloadType: 100, Seq: seq, Timestamp: ts, SSRC: 1})
		copy(b[rtpheader.Size:], payload)
		return b
	}
	cat := func(parts ...[][]byte) (out [][]byte) {
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	cases := []struct {
		name  string
		max   int
		pkts  [][]byte
		want  int // tags emitted (each must be a valid tag)
		drops [NumReasons]uint64
	}{
		{"duplicate_packet", 0, func() [][]byte { p := frag(10, 1, good); return [][]byte{p[0], p[1], p[1], p[2]} }(), 1, drops(Stale, 1)},
		{"garbage_packet", 0, cat([][]byte{{1, 2, 3}}, frag(10, 1, good)), 1, drops(BadPacket, 1)},
		{"declared_too_big_single", 0, cat(frag(9, 1, oneGood), frag(10, 1, lie(oneGood, 31))), 1, drops(SizeMismatch, 1)},
		{"declared_too_big_single_at_resync", 0, frag(10, 1, lie(oneGood, 31)), 0, drops(OrphanFragment, 1)},
		// after a first good tag the next starts for sure, so its lie is a size mismatch
		{"declared_too_small_multi", 0, cat(frag(9, 1, oneGood), frag(10, 1, lie(good, 300))), 1, drops(SizeMismatch, 1)},
		{"declared_too_big_multi", 0, cat(frag(9, 1, oneGood), frag(10, 1, lie(good, 600))), 1, drops(SizeMismatch, 1)},
		{"oversize", 400, cat(frag(9, 1, oneGood), frag(10, 1, good), frag(13, 1, oneGood)), 2, drops(Oversize, 1)},
		{"bad_tag_type", 0, cat(frag(9, 1, oneGood), [][]byte{raw(10, true, 0, append([]byte{7}, oneGood[1:]...))}), 1, drops(BadHeader, 1)},
		{"short_first_fragment", 0, cat(frag(9, 1, oneGood), [][]byte{raw(10, true, 0, []byte{9, 0, 0})}), 1, drops(BadHeader, 1)},
		{"empty_continuation_ok", 0, [][]byte{raw(1, false, 2, oneGood[:20]), raw(2, false, 2, nil), raw(3, true, 2, oneGood[20:])}, 1, drops()},
		// RTP ts disagreeing with the FLV header: not taken as a start when resyncing
		{"resync_needs_matching_ts", 0, [][]byte{raw(1, true, 3, oneGood)}, 0, drops(OrphanFragment, 1)},
		{"ssrc_change_mid_tag", 0, cat(frag(10, 1, good)[:2], frag(500, 2, good)), 1, drops(MissingFragment, 1)},
		{"sender_restart_backwards", 0, cat(frag(5000, 1, good), frag(100, 1, good)), 2, drops()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := Reassembler{MaxTagSize: c.max}
			n := 0
			for _, p := range c.pkts {
				if tg := r.Push(p); tg != nil {
					if _, err := flv.Check(tg, 0); err != nil {
						t.Fatalf("emitted a bad tag: %v", err)
					}
					n++
				}
			}
			if n != c.want {
				t.Errorf("emitted %d tags, want %d", n, c.want)
			}
			if r.Drops != c.drops {
				t.Errorf("drops %v, want %v", r.Drops, c.drops)
			}
		})
	}
}

func TestStaleRunResyncs(t *testing.T) {
	f := &Fragmenter{SSRC: 1, Seq: 1000, PayloadType: 100, MaxPayload: 200}
	var r Reassembler
	for i := 0; i < 10; i++ {
		for _, p := range fragmentAll(t, f, tag(9, uint32(i), 10)) {
			r.Push(p)
		}
	}
	f.Seq = 1000 - 200 // the sender went back (within the stale window) and stays there
	emitted := 0
	for i := 0; i < 200; i++ {
		for _, p := range fragmentAll(t, f, tag(9, uint32(i), 10)) {
			if r.Push(p) != nil {
				emitted++
			}
		}
	}
	if r.Drops[Stale] != staleRunMax || emitted != 200-staleRunMax {
		t.Fatalf("stale %d emitted %d", r.Drops[Stale], emitted)
	}
}

func TestFlushCountsTagInProgress(t *testing.T) {
	var r Reassembler
	var seen []Reason
	r.OnDrop = func(reason Reason) { seen = append(seen, reason) }
	p := fragmentAll(t, &Fragmenter{SSRC: 1, Seq: 1, PayloadType: 100, MaxPayload: 200}, tag(9, 0, 500))
	r.Push(p[0])
	r.Flush()
	r.Push(p[1]) // after a flush the stream is new: a continuation is an orphan
	if fmt.Sprint(seen) != "[missing_fragment orphan_fragment]" {
		t.Fatalf("drops %v", seen)
	}
}
