package shared

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/plugins/internal/pluginpb"
)

// codecCases are batches as OutBatch and as the generated message they must
// equal on the wire.
func codecCases() []struct {
	name string
	out  func() *OutBatch
	pb   *pluginpb.Batch
} {
	data := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*7 + 3)
		}
		return b
	}
	pkt := func(ev core.Event, typ uint8, ts uint32, ingest int64, d []byte) *core.Packet {
		p := core.NewPacket(len(d))
		copy(p.Data, d)
		p.Event, p.Type, p.Timestamp, p.Ingest = ev, typ, ts, ingest
		return p
	}
	init := &core.InitTags{Metadata: data(20), Video: data(30)}
	return []struct {
		name string
		out  func() *OutBatch
		pb   *pluginpb.Batch
	}{
		{"empty", func() *OutBatch { return &OutBatch{} }, &pluginpb.Batch{}},
		{"start with init, data, end", func() *OutBatch {
			return &OutBatch{Packets: []OutPacket{
				{P: pkt(core.EventStart, 0, 0, 0, nil), Stream: 7, Name: "live/a", Init: init, HasInit: true},
				{P: pkt(core.EventData, flv.TypeVideo, 1<<31, 1_700_000_000_123_456_789, data(1200)), Stream: 7},
				{P: pkt(core.EventData, flv.TypeAudio, 0, 0, nil), Stream: 1<<63 | 1},
				{P: pkt(core.EventEnd, 0, 0, 0, nil), Stream: 7},
			}}
		}, &pluginpb.Batch{Packets: []*pluginpb.Packet{
			{Event: pluginpb.Event_START, Stream: 7, Name: "live/a", Init: &pluginpb.InitTags{Metadata: data(20), Video: data(30)}},
			{Stream: 7, Data: data(1200), Type: 9, Timestamp: 1 << 31, Ingest: 1_700_000_000_123_456_789},
			{Stream: 1<<63 | 1, Type: 8},
			{Event: pluginpb.Event_END, Stream: 7},
		}}},
		{"cleared init", func() *OutBatch {
			return &OutBatch{Packets: []OutPacket{{P: pkt(core.EventData, 9, 1, -5, data(3)), Stream: 2, HasInit: true}}}
		}, &pluginpb.Batch{Packets: []*pluginpb.Packet{{Stream: 2, Type: 9, Timestamp: 1, Ingest: -5, Data: data(3), Init: &pluginpb.InitTags{}}}}},
		{"consumed only", func() *OutBatch { return &OutBatch{Consumed: 1 << 40} }, &pluginpb.Batch{Consumed: 1 << 40}},
		{"data and consumed", func() *OutBatch {
			return &OutBatch{Packets: []OutPacket{{P: pkt(core.EventData, 9, 2, 0, data(5)), Stream: 3}}, Consumed: 300}
		}, &pluginpb.Batch{Packets: []*pluginpb.Packet{{Stream: 3, Type: 9, Timestamp: 2, Data: data(5)}}, Consumed: 300}},
	}
}

func TestCodecMatchesProto(t *testing.T) {
	for _, c := range codecCases() {
		t.Run(c.name, func(t *testing.T) {
			got, err := Codec.Marshal(c.out())
			if err != nil {
				t.Fatal(err)
			}
			want, err := proto.MarshalOptions{Deterministic: true}.Marshal(c.pb)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Materialize(), want) {
				t.Fatalf("codec bytes differ from protobuf's:\n got %x\nwant %x", got.Materialize(), want)
			}
			// And back, from protobuf's bytes, split over two buffers.
			var in InBatch
			half := len(want) / 2
			if err := Codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(want[:half]), mem.SliceBuffer(want[half:])}, &in); err != nil {
				t.Fatal(err)
			}
			if len(in.Packets) != len(c.pb.Packets) {
				t.Fatalf("%d packets back, want %d", len(in.Packets), len(c.pb.Packets))
			}
			if in.Consumed != c.pb.Consumed {
				t.Errorf("consumed = %d, want %d", in.Consumed, c.pb.Consumed)
			}
			for i, q := range c.pb.Packets {
				g := in.Packets[i]
				if g.Event != core.Event(q.Event) || g.Stream != q.Stream || g.Name != q.Name || (g.Init == nil) != (q.Init == nil) {
					t.Errorf("packet %d = %+v, want %+v", i, g, q)
				}
				if g.Init != nil && (!bytes.Equal(g.Init.Metadata, q.Init.Metadata) || !bytes.Equal(g.Init.Video, q.Init.Video)) {
					t.Errorf("packet %d init differs", i)
				}
				if g.Event == core.EventData {
					if g.P == nil || !bytes.Equal(g.P.Data, q.Data) || g.P.Type != uint8(q.Type) || g.P.Timestamp != q.Timestamp || g.P.Ingest != q.Ingest {
						t.Errorf("packet %d data differs", i)
					}
					g.P.Release()
				}
			}
		})
	}
}

// FuzzCodec feeds arbitrary bytes to the batch decoder: no panics, and what
// it accepts protobuf accepts too.
func FuzzCodec(f *testing.F) {
	for _, c := range codecCases() {
		b, _ := proto.Marshal(c.pb)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var in InBatch
		if err := Codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &in); err != nil {
			return
		}
		for _, q := range in.Packets {
			q.P.Release()
		}
		var pb pluginpb.Batch
		if err := proto.Unmarshal(b, &pb); err != nil {
			// The hand decoder is laxer about event values only if proto rejects
			// nothing else; report the disagreement.
			t.Fatalf("codec accepted bytes protobuf rejects: %v", err)
		}
	})
}

func BenchmarkCodec(b *testing.B) {
	c := codecCases()[1]
	out := c.out()
	b.ReportAllocs()
	var in InBatch
	for b.Loop() {
		bs, _ := Codec.Marshal(out)
		if err := Codec.Unmarshal(bs, &in); err != nil {
			b.Fatal(err)
		}
		bs.Free()
		for _, q := range in.Packets {
			q.P.Release()
		}
	}
}
