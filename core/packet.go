package core

import (
	"sync"
	"sync/atomic"
	"time"
)

// Event says whether a packet carries data or marks a stream's start or end.
type Event uint8

const (
	// EventData is a packet with media in Data.
	EventData Event = iota
	// EventStart opens a stream: stages set up per-stream state. Data is empty.
	EventStart
	// EventEnd closes a stream: stages free per-stream state. Data is empty.
	EventEnd
)

func (e Event) String() string {
	switch e {
	case EventData:
		return "data"
	case EventStart:
		return "start"
	case EventEnd:
		return "end"
	}
	return "event?"
}

// Packet is the unit that travels between stages. Exactly one stage owns a
// packet at a time: a stage either passes it on with Output.Emit, or ends its
// life with Release. Holding on to Data after either is a bug.
//
// A packet that reaches several branches is shared: each branch gets its
// own Packet (fields free to change) whose Data is the same buffer, which
// must then be read, not written; Spec.Mutates asks for a private copy.
type Packet struct {
	Event  Event
	Stream *Stream
	// Data is the packet's bytes: for av the RTMP message body, for flv the
	// whole tag (11-byte header + body), for rtp the marshalled RTP packet.
	Data []byte
	// Type is the RTMP message type / FLV tag type (flv.TypeAudio,
	// flv.TypeVideo, flv.TypeScript: RTMP uses the same ids) of av and flv
	// packets; 0 for rtp.
	Type uint8
	// Timestamp in milliseconds (av, flv; for rtp the RTP timestamp).
	Timestamp uint32
	// Ingest is when the packet's content entered this process
	// (UnixNano), kept across stages for latency measurement.
	Ingest int64
	// Rebuilt marks an rtp packet fec-decoder recovered from parity: it
	// did not arrive by itself, so an edge's receiver report counts it as
	// lost (the loss reported is the path's, before FEC and repair).
	Rebuilt bool
	// FEC is fec-decoder's word on the FEC that protects the stream, set
	// on the source packets it passes on: rtp-reorder holds the repair
	// ask for a gap while parity may still rebuild it. Zero: no FEC.
	FEC FECHint

	class int8 // pool size class; -1 when not pooled
	// refs counts the shares of this packet's buffer still held besides
	// the packet itself; the buffer returns to the pool when the last of
	// them is released.
	refs atomic.Int32
	// owner is, for a share, the packet whose buffer Data is.
	owner *Packet
}

// FECHint is what fec-decoder knows, when a packet passes, of the parity
// still to come for the stream: a gap at or after From found now may be
// rebuilt within Hold (when the open group's parity is due: its measured
// lag after the group's first packet, plus deviations); a gap before From
// is past FEC (its group's parity has come and gone: rebuilt already, or
// not rebuildable), so its repair is asked at once.
type FECHint struct {
	Hold time.Duration
	From uint16
	On   bool // the stream's parity is arriving: the hint holds
}

// size classes of pooled packet buffers; a larger packet is allocated and
// left to the garbage collector.
var classSizes = [...]int{2 << 10, 16 << 10, 128 << 10, 1 << 20}

var packetPools [len(classSizes)]sync.Pool

var unpooled = sync.Pool{New: func() any { return &Packet{class: -1} }}

func init() {
	for i, size := range classSizes {
		packetPools[i].New = func() any {
			return &Packet{Data: make([]byte, 0, size), class: int8(i)}
		}
	}
}

// NewPacket returns a data packet from the pool whose Data has length n.
// On the hot path this does not allocate once the pool is warm.
func NewPacket(n int) *Packet {
	for i, size := range classSizes {
		if n <= size {
			p := packetPools[i].Get().(*Packet)
			p.Data = p.Data[:n]
			return p
		}
	}
	p := unpooled.Get().(*Packet)
	p.Data = make([]byte, n)
	return p
}

// NewEvent returns a start or end packet for s.
func NewEvent(ev Event, s *Stream) *Packet {
	p := unpooled.Get().(*Packet)
	p.Event = ev
	p.Stream = s
	p.Data = nil
	return p
}

// Clone returns a pooled copy of p (same stream, event and fields).
func (p *Packet) Clone() *Packet {
	c := NewPacket(len(p.Data))
	copy(c.Data, p.Data)
	c.Event, c.Stream, c.Type, c.Timestamp, c.Ingest, c.Rebuilt, c.FEC = p.Event, p.Stream, p.Type, p.Timestamp, p.Ingest, p.Rebuilt, p.FEC
	return c
}

// Share returns a packet with p's fields whose Data is p's buffer, read
// only: the buffer goes back to the pool once p and every share of it are
// released. Its capacity ends at its length, so an append copies instead of
// writing into the buffer the others read. On the hot path this does not
// allocate once the pool is warm.
func (p *Packet) Share() *Packet {
	root := p
	if p.owner != nil {
		root = p.owner
	}
	root.refs.Add(1)
	s := unpooled.Get().(*Packet)
	s.Event, s.Stream, s.Type, s.Timestamp, s.Ingest, s.Rebuilt, s.FEC = p.Event, p.Stream, p.Type, p.Timestamp, p.Ingest, p.Rebuilt, p.FEC
	s.Data = p.Data[:len(p.Data):len(p.Data)]
	s.owner = root
	return s
}

// Release ends the packet's life and recycles its buffer, or for a shared
// buffer lets go of it. Safe on nil.
func (p *Packet) Release() {
	if p == nil {
		return
	}
	if root := p.owner; root != nil {
		p.owner = nil
		p.Event, p.Stream, p.Type, p.Timestamp, p.Ingest, p.Rebuilt, p.FEC = EventData, nil, 0, 0, 0, false, FECHint{}
		p.Data = nil
		unpooled.Put(p)
		root.unref()
		return
	}
	p.unref()
}

// unref lets go of one hold on p's buffer and recycles p with the last.
// refs 0 means p is the only hold; the holder that takes refs below 0 is
// the last of several releasing at once.
func (p *Packet) unref() {
	if p.refs.Load() != 0 {
		if p.refs.Add(-1) >= 0 {
			return
		}
		p.refs.Store(0)
	}
	p.recycle()
}

func (p *Packet) recycle() {
	p.Event, p.Stream, p.Type, p.Timestamp, p.Ingest, p.Rebuilt, p.FEC = EventData, nil, 0, 0, 0, false, FECHint{}
	if p.class < 0 {
		p.Data = nil
		unpooled.Put(p)
		return
	}
	p.Data = p.Data[:0]
	packetPools[p.class].Put(p)
}

// InitTags are the FLV tags a player needs before any frame: onMetaData and
// the audio and video sequence headers. Each is a whole FLV tag or nil.
// An InitTags value is never changed once shared; replace it instead.
type InitTags struct {
	Metadata []byte
	Video    []byte
	Audio    []byte
}

// Tags returns the present tags in the order a player wants them.
func (t *InitTags) Tags() [][]byte {
	if t == nil {
		return nil
	}
	out := make([][]byte, 0, 3)
	for _, tag := range [][]byte{t.Metadata, t.Video, t.Audio} {
		if len(tag) > 0 {
			out = append(out, tag)
		}
	}
	return out
}

var streamIDs atomic.Uint64

// Stream is one live stream inside one pipeline, named APP/KEY. Every packet
// of it points to the same Stream, so stages may key per-stream state on the
// pointer or on ID.
type Stream struct {
	Name    string // "live/movie"
	ID      uint64 // unique in the process
	Started time.Time

	init    atomic.Pointer[InitTags]
	sender  atomic.Pointer[SenderClock]
	Packets atomic.Uint64 // counted as the source emits them
	Bytes   atomic.Uint64
}

// SenderClock maps a stream's timestamps (FLV milliseconds, which its RTP
// timestamps are) to the wall clock of the cloud that sends it, as its
// RTCP sender reports say: an edge measures from it how long after the
// cloud sent a tag it has the tag ready for viewers.
type SenderClock struct {
	SSRC uint32 // the sender's: its clock maps only its own timestamps
	Wall time.Time
	TS   uint32
	// NTP is the report's NTP time as sent and Arrived when the edge got
	// it: an edge's receiver report echoes them (LSR, DLSR) so the cloud
	// can compute the round trip.
	NTP     uint64
	Arrived time.Time
}

// SenderClock returns the stream's latest sender clock (nil: none known).
func (s *Stream) SenderClock() *SenderClock { return s.sender.Load() }

// SetSenderClock publishes c (udp-source, from a sender report).
func (s *Stream) SetSenderClock(c *SenderClock) { s.sender.Store(c) }

// SinceSent is how long after the sender ssrc sent the tag stamped ts it
// is now (at now), by the stream's sender clock; false when none of that
// sender is known (none yet, or the stream has moved to another sender).
func (s *Stream) SinceSent(ssrc, ts uint32, now time.Time) (time.Duration, bool) {
	c := s.sender.Load()
	if c == nil || c.SSRC != ssrc {
		return 0, false
	}
	sent := c.Wall.Add(time.Duration(int32(ts-c.TS)) * time.Millisecond)
	return now.Sub(sent), true
}

// NewStream returns a stream named name with a fresh ID.
func NewStream(name string) *Stream {
	return &Stream{Name: name, ID: streamIDs.Add(1), Started: time.Now()}
}

// Init returns the stream's current init tags (nil if none known yet).
func (s *Stream) Init() *InitTags { return s.init.Load() }

// SetInit publishes new init tags for downstream stages (late joiners).
func (s *Stream) SetInit(t *InitTags) { s.init.Store(t) }
