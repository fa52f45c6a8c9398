package shared

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers "proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/mediapipe/mediapipe/core"
)

// Codec is the gRPC codec both sides use. It writes and reads the Run
// call's batches (OutBatch, InBatch) as the protobuf wire bytes of
// pluginpb.Batch directly from and into core packets: no message structs,
// one copy per packet and no allocation per packet. Every other message goes
// to gRPC's proto codec. The bytes are plain protobuf, so a plugin written
// with any protobuf library interoperates.
var Codec encoding.CodecV2 = codec{encoding.GetCodecV2("proto")}

type codec struct{ proto encoding.CodecV2 }

func (codec) Name() string { return "proto" }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if b, ok := v.(*OutBatch); ok {
		return b.marshal(), nil
	}
	return c.proto.Marshal(v)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	b, ok := v.(*InBatch)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	if len(data) == 1 {
		return b.unmarshal(data[0].ReadOnlyData())
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return b.unmarshal(buf.ReadOnlyData())
}

// OutPacket is one packet to send. P's data is read while marshalling.
type OutPacket struct {
	P      *core.Packet
	Stream uint64 // wire id
	Name   string // sent with START
	// Init is sent when HasInit (the stream's init tags changed).
	Init    *core.InitTags
	HasInit bool
}

// OutBatch is a batch to send with SendMsg.
type OutBatch struct {
	Packets []OutPacket
	// Consumed is plugin.proto's Batch.consumed (the plugin's side only):
	// the host's data packets the stage has finished with.
	Consumed uint64
}

// Field numbers of plugin.proto's Packet, Batch and InitTags.
const (
	fBatchPackets  = 1
	fBatchConsumed = 2

	fEvent     = 1
	fStream    = 2
	fName      = 3
	fData      = 4
	fType      = 5
	fTimestamp = 6
	fIngest    = 7
	fInit      = 8

	fMetadata = 1
	fVideo    = 2
	fAudio    = 3
)

func sizeBytesField(n int) int { return 1 + protowire.SizeBytes(n) }

func sizeVarintField(v uint64) int {
	if v == 0 {
		return 0
	}
	return 1 + protowire.SizeVarint(v)
}

func initSize(t *core.InitTags) int {
	if t == nil {
		return 0
	}
	n := 0
	for _, b := range [][]byte{t.Metadata, t.Video, t.Audio} {
		if len(b) > 0 {
			n += sizeBytesField(len(b))
		}
	}
	return n
}

func (q *OutPacket) size() int {
	p := q.P
	n := sizeVarintField(uint64(p.Event)) + sizeVarintField(q.Stream) +
		sizeVarintField(uint64(p.Type)) + sizeVarintField(uint64(p.Timestamp)) + sizeVarintField(uint64(p.Ingest))
	if q.Name != "" {
		n += sizeBytesField(len(q.Name))
	}
	if len(p.Data) > 0 {
		n += sizeBytesField(len(p.Data))
	}
	if q.HasInit {
		n += sizeBytesField(initSize(q.Init))
	}
	return n
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendBytesField(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func (b *OutBatch) marshal() mem.BufferSlice {
	total := 0
	for i := range b.Packets {
		total += sizeBytesField(b.Packets[i].size())
	}
	total += sizeVarintField(b.Consumed)
	pool := mem.DefaultBufferPool()
	bp := pool.Get(total)
	buf := (*bp)[:0]
	for i := range b.Packets {
		q := &b.Packets[i]
		p := q.P
		buf = protowire.AppendTag(buf, fBatchPackets, protowire.BytesType)
		buf = protowire.AppendVarint(buf, uint64(q.size()))
		buf = appendVarintField(buf, fEvent, uint64(p.Event))
		buf = appendVarintField(buf, fStream, q.Stream)
		if q.Name != "" {
			buf = protowire.AppendTag(buf, fName, protowire.BytesType)
			buf = protowire.AppendString(buf, q.Name)
		}
		if len(p.Data) > 0 {
			buf = appendBytesField(buf, fData, p.Data)
		}
		buf = appendVarintField(buf, fType, uint64(p.Type))
		buf = appendVarintField(buf, fTimestamp, uint64(p.Timestamp))
		buf = appendVarintField(buf, fIngest, uint64(p.Ingest))
		if q.HasInit {
			buf = protowire.AppendTag(buf, fInit, protowire.BytesType)
			buf = protowire.AppendVarint(buf, uint64(initSize(q.Init)))
			if t := q.Init; t != nil {
				for _, f := range []struct {
					num protowire.Number
					b   []byte
				}{{fMetadata, t.Metadata}, {fVideo, t.Video}, {fAudio, t.Audio}} {
					if len(f.b) > 0 {
						buf = appendBytesField(buf, f.num, f.b)
					}
				}
			}
		}
	}
	buf = appendVarintField(buf, fBatchConsumed, b.Consumed)
	*bp = buf
	return mem.BufferSlice{mem.NewBuffer(bp, pool)}
}

// InPacket is one received packet. Data packets come as P, a pooled packet
// holding a copy of the bytes (Stream still nil); events have P nil.
type InPacket struct {
	Event  core.Event
	Stream uint64
	Name   string
	Init   *core.InitTags // non-nil when the sender attached init tags
	P      *core.Packet
}

// InBatch receives a batch with RecvMsg. Each RecvMsg replaces Packets and
// Consumed.
type InBatch struct {
	Packets  []InPacket
	Consumed uint64 // Batch.consumed: 0 when absent
}

var errWire = errors.New("plugin wire: malformed batch")

func (b *InBatch) unmarshal(buf []byte) error {
	clear(b.Packets)
	b.Packets = b.Packets[:0]
	b.Consumed = 0
	for len(buf) > 0 {
		num, typ, n := consumeTag(buf)
		if n < 0 {
			return b.fail(protowire.ParseError(n))
		}
		buf = buf[n:]
		if num == fBatchConsumed && typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(buf)
			if n < 0 {
				return b.fail(protowire.ParseError(n))
			}
			buf = buf[n:]
			b.Consumed = v
			continue
		}
		if num != fBatchPackets || typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, buf)
			if n < 0 {
				return b.fail(protowire.ParseError(n))
			}
			buf = buf[n:]
			continue
		}
		msg, n := protowire.ConsumeBytes(buf)
		if n < 0 {
			return b.fail(protowire.ParseError(n))
		}
		buf = buf[n:]
		q, err := parsePacket(msg)
		if err != nil {
			return b.fail(err)
		}
		b.Packets = append(b.Packets, q)
	}
	return nil
}

// fail releases what was decoded so far.
func (b *InBatch) fail(err error) error {
	for i := range b.Packets {
		b.Packets[i].P.Release()
	}
	clear(b.Packets)
	b.Packets = b.Packets[:0]
	return fmt.Errorf("%w: %v", errWire, err)
}

func parsePacket(msg []byte) (InPacket, error) {
	var (
		q       InPacket
		data    []byte
		typ, ts uint64
		ingest  uint64
		event   uint64
	)
	for len(msg) > 0 {
		num, wt, n := consumeTag(msg)
		if n < 0 {
			return q, protowire.ParseError(n)
		}
		msg = msg[n:]
		switch {
		case wt == protowire.VarintType && (num == fEvent || num == fStream || num == fType || num == fTimestamp || num == fIngest):
			v, n := protowire.ConsumeVarint(msg)
			if n < 0 {
				return q, protowire.ParseError(n)
			}
			msg = msg[n:]
			switch num {
			case fEvent:
				event = v
			case fStream:
				q.Stream = v
			case fType:
				typ = v
			case fTimestamp:
				ts = v
			case fIngest:
				ingest = v
			}
		case wt == protowire.BytesType && (num == fName || num == fData || num == fInit):
			v, n := protowire.ConsumeBytes(msg)
			if n < 0 {
				return q, protowire.ParseError(n)
			}
			msg = msg[n:]
			switch num {
			case fName:
				q.Name = string(v)
			case fData:
				data = v
			case fInit:
				t, err := parseInit(v)
				if err != nil {
					return q, err
				}
				q.Init = t
			}
		default:
			n := protowire.ConsumeFieldValue(num, wt, msg)
			if n < 0 {
				return q, protowire.ParseError(n)
			}
			msg = msg[n:]
		}
	}
	if event > uint64(core.EventEnd) {
		return q, fmt.Errorf("unknown event %d", event)
	}
	q.Event = core.Event(event)
	if q.Event == core.EventData {
		p := core.NewPacket(len(data))
		copy(p.Data, data)
		p.Type, p.Timestamp, p.Ingest = uint8(typ), uint32(ts), int64(ingest)
		q.P = p
	}
	return q, nil
}

func parseInit(msg []byte) (*core.InitTags, error) {
	t := &core.InitTags{}
	for len(msg) > 0 {
		num, wt, n := consumeTag(msg)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		msg = msg[n:]
		if wt != protowire.BytesType || num < fMetadata || num > fAudio {
			n := protowire.ConsumeFieldValue(num, wt, msg)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			msg = msg[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(msg)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		msg = msg[n:]
		own := append([]byte(nil), v...)
		switch num {
		case fMetadata:
			t.Metadata = own
		case fVideo:
			t.Video = own
		case fAudio:
			t.Audio = own
		}
	}
	return t, nil
}

// consumeTag is protowire.ConsumeTag refusing field numbers protobuf refuses.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	num, typ, n := protowire.ConsumeTag(b)
	if n >= 0 && !num.IsValid() {
		return 0, 0, -1
	}
	return num, typ, n
}
