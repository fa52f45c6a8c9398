package fec

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/stagetest"
)

const testSSRC = 0x11223344

// source returns source packet i of a case: RTP of payload type 100, the
// marker on every third, timestamps advancing every third packet, a payload
// of size bytes that differs by i.
func source(seq0 uint16, i, size int) []byte {
	b := make([]byte, rtpHeader+size)
	b[0] = 2 << 6
	b[1] = 100
	if i%3 == 2 {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:], seq0+uint16(i))
	binary.BigEndian.PutUint32(b[4:], uint32(1000+40*(i/3)))
	binary.BigEndian.PutUint32(b[8:], testSSRC)
	copy(b[rtpHeader:], stagetest.Pattern(size, byte(i)))
	return b
}

// fecCase is one loss pattern: n source packets through an encoder, some
// source and parity packets lost, then a decoder.
type fecCase struct {
	name       string
	group      int
	overhead   float64
	n          int
	seq0       uint16
	sizes      []int // payload sizes, cycled
	loseSrc    []int // source packets lost (index from 0)
	loseParity []int // parity packets lost (index in the order sent)
	swap       bool  // every pair of packets on the wire arrives swapped
	dup        bool  // every packet arrives twice
	recovered  int   // packets the decoder must recover
	unrecov    int   // lost packets it must count as unrecoverable
}

var cases = []fecCase{
	{name: "no loss", group: 10, overhead: 0.2, n: 20},
	{name: "one lost in a group", group: 10, overhead: 0.2, n: 20, loseSrc: []int{3}, recovered: 1},
	{name: "m lost", group: 10, overhead: 0.2, n: 20, loseSrc: []int{2, 7, 11, 19}, recovered: 4},
	{name: "m+1 lost", group: 10, overhead: 0.2, n: 20, loseSrc: []int{1, 2, 3, 15}, recovered: 1, unrecov: 3},
	{name: "parity lost", group: 10, overhead: 0.2, n: 20, loseSrc: []int{4}, loseParity: []int{0}, recovered: 1},
	{name: "all parity lost", group: 10, overhead: 0.2, n: 20, loseSrc: []int{4}, loseParity: []int{0, 1}},
	{name: "reordered", group: 10, overhead: 0.2, n: 20, loseSrc: []int{5, 15}, swap: true, recovered: 2},
	{name: "duplicated", group: 10, overhead: 0.2, n: 20, loseSrc: []int{5, 9}, dup: true, recovered: 2},
	{name: "sequence wraps", group: 10, overhead: 0.2, n: 20, seq0: 65530, loseSrc: []int{3, 6, 12}, recovered: 3},
	{name: "variable sizes", group: 10, overhead: 0.3, n: 30, sizes: []int{1180, 30, 700, 1, 0, 1179, 64}, loseSrc: []int{0, 4, 9, 10, 13, 26}, recovered: 6},
	{name: "short last group", group: 10, overhead: 0.2, n: 15, loseSrc: []int{12}, recovered: 1},
	{name: "as much parity as data", group: 4, overhead: 1, n: 8, loseSrc: []int{0, 1, 2, 3}, recovered: 4},
	{name: "one parity per 20", group: 20, overhead: 0.05, n: 40, loseSrc: []int{0, 39}, recovered: 2},
	{name: "overhead 0", group: 10, overhead: 0, n: 20, loseSrc: []int{3}},
}

func (c fecCase) sources() [][]byte {
	sizes := c.sizes
	if sizes == nil {
		sizes = []int{1180, 1180, 400}
	}
	src := make([][]byte, c.n)
	for i := range src {
		src[i] = source(c.seq0, i, sizes[i%len(sizes)])
	}
	return src
}

// encode runs sources through a fec-encoder and returns what it sent, in order.
func encode(t testing.TB, group int, overhead float64, src [][]byte) []stagetest.Captured {
	t.Helper()
	env := core.TestEnv("fec-encoder")
	clock := stagetest.NewFakeClock(time.Unix(0, 0))
	env.Clock = clock
	var cfg EncoderConfig
	stagetest.Decode(t, "fec-encoder", map[string]any{"group": int64(group), "overhead": overhead}, &cfg)
	st, err := NewEncoder(&cfg, env)
	if err != nil {
		t.Fatal(err)
	}
	e := st.(*Encoder)
	out := stagetest.NewCollector()
	e.out, e.timer = out, clock.NewTimer(time.Hour)
	stream := core.NewStream("live/fec")
	e.handle(core.NewEvent(core.EventStart, stream))
	for _, b := range src {
		p := core.NewPacket(len(b))
		copy(p.Data, b)
		p.Stream = stream
		e.handle(p)
	}
	e.handle(core.NewEvent(core.EventEnd, stream))
	return out.Data()
}

// wire applies a case's losses, swaps and duplicates to what the encoder sent.
func (c fecCase) wire(sent [][]byte) [][]byte {
	var got [][]byte
	si, pi := 0, 0
	for _, b := range sent {
		if b[1]&0x7f == 101 {
			if !slices.Contains(c.loseParity, pi) {
				got = append(got, b)
			}
			pi++
			continue
		}
		if !slices.Contains(c.loseSrc, si) {
			got = append(got, b)
		}
		si++
	}
	if c.swap {
		for i := 0; i+1 < len(got); i += 2 {
			got[i], got[i+1] = got[i+1], got[i]
		}
	}
	if c.dup {
		var d [][]byte
		for _, b := range got {
			d = append(d, b, b)
		}
		got = d
	}
	return got
}

// decode runs packets through a fec-decoder and returns its data output and the stage.
func decode(t testing.TB, pkts [][]byte) ([]stagetest.Captured, *Decoder) {
	t.Helper()
	var cfg DecoderConfig
	stagetest.Decode(t, "fec-decoder", nil, &cfg)
	st, err := NewDecoder(&cfg, core.TestEnv("fec-decoder"))
	if err != nil {
		t.Fatal(err)
	}
	d := st.(*Decoder)
	out := stagetest.NewCollector()
	d.out = out
	stream := core.NewStream("live/fec")
	d.handle(core.NewEvent(core.EventStart, stream))
	for _, b := range pkts {
		p := core.NewPacket(len(b))
		copy(p.Data, b)
		p.Stream = stream
		d.handle(p)
	}
	d.handle(core.NewEvent(core.EventEnd, stream))
	return out.Data(), d
}

func seqOf(b []byte) uint16 { return binary.BigEndian.Uint16(b[2:]) }

// checkOut checks that every packet out is a source packet byte for byte
// and that no parity passes.
func checkOut(t testing.TB, out []stagetest.Captured, src [][]byte, seq0 uint16) map[uint16]int {
	t.Helper()
	seen := map[uint16]int{}
	for _, p := range out {
		if len(p.Data) >= 2 && p.Data[1]&0x7f == 101 {
			t.Fatalf("parity passed the decoder: % x", p.Data[:min(len(p.Data), 24)])
		}
		i := int(seqOf(p.Data) - seq0)
		if i >= len(src) || !bytes.Equal(p.Data, src[i]) {
			t.Fatalf("packet seq %d out is not its source byte for byte", seqOf(p.Data))
		}
		seen[seqOf(p.Data)]++
	}
	return seen
}

func TestCases(t *testing.T) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := c.sources()
			sent := encode(t, c.group, c.overhead, src)
			var wire [][]byte
			srcOut := 0 // the source packets pass unchanged and in order
			for _, p := range sent {
				if p.Data[1]&0x7f == 101 {
					continue
				}
				if !bytes.Equal(p.Data, src[srcOut]) {
					t.Fatalf("encoder changed source %d", srcOut)
				}
				srcOut++
			}
			if srcOut != len(src) {
				t.Fatalf("encoder passed %d of %d sources", srcOut, len(src))
			}
			if want := wantParity(c); len(sent)-srcOut != want {
				t.Fatalf("encoder sent %d parity packets, want %d", len(sent)-srcOut, want)
			}
			for _, p := range sent {
				wire = append(wire, p.Data)
			}
			out, d := decode(t, c.wire(wire))
			seen := checkOut(t, out, src, c.seq0)
			for i := range src {
				lost := slices.Contains(c.loseSrc, i)
				n := seen[c.seq0+uint16(i)]
				switch {
				case !lost && !c.dup && n != 1, !lost && c.dup && n != 2:
					t.Errorf("source %d came out %d times", i, n)
				}
			}
			if got := int(core.CounterValue(d.recovered)); got != c.recovered {
				t.Errorf("recovered %d, want %d", got, c.recovered)
			}
			recoveredSeen := 0
			for _, i := range c.loseSrc {
				recoveredSeen += seen[c.seq0+uint16(i)]
			}
			if recoveredSeen != c.recovered {
				t.Errorf("%d lost packets came out, want %d", recoveredSeen, c.recovered)
			}
			if got := int(d.unrecoverable.Value()); got != c.unrecov {
				t.Errorf("unrecoverable %d, want %d", got, c.unrecov)
			}
			if j := d.junk.Value(); j != 0 {
				t.Errorf("genuine parity counted as junk %v times", j)
			}
		})
	}
}

// wantParity is how many parity packets a case's encoder sends: per group
// of k, ceil(overhead·k) (at least 1), none at overhead 0.
func wantParity(c fecCase) int {
	if c.overhead == 0 {
		return 0
	}
	n := 0
	for left := c.n; left > 0; left -= c.group {
		k := min(left, c.group)
		m := int(c.overhead*float64(k) + 0.999999)
		n += max(1, m)
	}
	return n
}
