// Package repairwire is the edge↔cloud repair protocol's wire format (docs/protocol.md):
// frames, generic NACK batches, HELLO, STREAMS and INIT encodings; bytes only, no I/O.
package repairwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ALPN is the TLS application protocol both ends must offer. Its value is on
// the wire and older peers check it: it keeps the protocol's first name.
const ALPN = "mediapipe-rtx/1"

// Version is the protocol version carried in HELLO.
const Version = 1

// FrameType is the first byte of every frame.
type FrameType uint8

// Frame types (see docs/protocol.md for the byte layouts).
const (
	FrameHello      FrameType = 0x01 // client → server, first frame of the control stream
	FrameHelloOK    FrameType = 0x02 // server → client, token accepted
	FrameNACK       FrameType = 0x10 // client → server: batch of generic NACK entries
	FrameRepair     FrameType = 0x11 // server → client: one cached RTP packet, byte for byte
	FrameGone       FrameType = 0x12 // server → client: NACK entries no longer (or never) cached
	FrameRefused    FrameType = 0x13 // server → client: NACK entries refused by the rate limit
	FrameStreamsReq FrameType = 0x20 // client → server: list streams
	FrameStreams    FrameType = 0x21 // server → client: SSRC → name list
	FrameInitReq    FrameType = 0x22 // client → server: init tags of one stream
	FrameInit       FrameType = 0x23 // server → client: init tags
)

func (t FrameType) String() string {
	switch t {
	case FrameHello:
		return "HELLO"
	case FrameHelloOK:
		return "HELLO_OK"
	case FrameNACK:
		return "NACK"
	case FrameRepair:
		return "REPAIR"
	case FrameGone:
		return "GONE"
	case FrameRefused:
		return "REFUSED"
	case FrameStreamsReq:
		return "STREAMS_REQ"
	case FrameStreams:
		return "STREAMS"
	case FrameInitReq:
		return "INIT_REQ"
	case FrameInit:
		return "INIT"
	case FrameReport:
		return "REPORT"
	}
	return fmt.Sprintf("frame(0x%02x)", uint8(t))
}

// FrameHeaderSize is the type byte plus a 24-bit big-endian payload length.
const FrameHeaderSize = 4

// Frame size limits. A reader refuses a longer frame before allocating it.
const (
	MaxRequestFrame = 8 << 10 // client → server payload
	MaxReplyFrame   = 4 << 20 // server → client payload (INIT carries whole tags)
	MaxInitTag      = 1 << 20 // one init tag
	MaxNameLen      = 255
	MaxTokenLen     = 255
	MaxStreams      = 4096 // entries in one STREAMS frame
)

// QUIC application error codes: connection level. Untyped, so this package
// needs no QUIC library; they convert to quic-go's ApplicationErrorCode.
const (
	CodeNormal       = 0x0
	CodeUnauthorized = 0x101 // wrong or missing token
	CodeProtocol     = 0x102 // bad HELLO, wrong version
	CodeHelloTimeout = 0x103 // no HELLO in time
	CodeShutdown     = 0x104 // server stopping
	CodeBusy         = 0x105 // too many peers waiting to authenticate
	CodeTooManyPeers = 0x106 // right token, but max_peers are already connected
)

// QUIC stream error codes: one request stream reset, the connection lives on
// (untyped: quic-go's StreamErrorCode).
const (
	StreamBadFrame = 0x201 // unknown type or malformed payload
	StreamTooLarge = 0x202 // frame over the size limit
	StreamSlow     = 0x203 // peer did not read replies in time
	CodeStreamGone = 0x204 // reply stream reset because its request side failed
	StreamIdle     = 0x205 // request stream silent for the server's idle timeout
)

var (
	// ErrFrameTooLarge: a frame's declared length is over the reader's limit.
	ErrFrameTooLarge = errors.New("repairwire: frame too large")
	// ErrMalformed: a frame's payload does not parse.
	ErrMalformed = errors.New("repairwire: malformed frame")
)

// AppendFrameHeader appends the 4-byte header of a frame of type t with an
// n-byte payload.
func AppendFrameHeader(dst []byte, t FrameType, n int) []byte {
	return append(dst, byte(t), byte(n>>16), byte(n>>8), byte(n))
}

// AppendFrame appends a whole frame.
func AppendFrame(dst []byte, t FrameType, payload []byte) []byte {
	return append(AppendFrameHeader(dst, t, len(payload)), payload...)
}

// FrameReader reads frames from a stream, reusing one buffer. The payload
// returned by Next is valid until the following call.
type FrameReader struct {
	r   io.Reader
	max int
	hdr [FrameHeaderSize]byte
	buf []byte
}

// NewFrameReader reads frames of at most max payload bytes from r.
func NewFrameReader(r io.Reader, max int) *FrameReader { return &FrameReader{r: r, max: max} }

// Next reads one frame. io.EOF means the stream ended cleanly between frames.
func (f *FrameReader) Next() (FrameType, []byte, error) {
	if _, err := io.ReadFull(f.r, f.hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int(f.hdr[1])<<16 | int(f.hdr[2])<<8 | int(f.hdr[3])
	if n > f.max {
		return FrameType(f.hdr[0]), nil, fmt.Errorf("%w: %s of %d bytes (limit %d)", ErrFrameTooLarge, FrameType(f.hdr[0]), n, f.max)
	}
	if cap(f.buf) < n {
		f.buf = make([]byte, n)
	}
	f.buf = f.buf[:n]
	if _, err := io.ReadFull(f.r, f.buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return FrameType(f.hdr[0]), f.buf, nil
}

// Hello is the first frame a client sends.
type Hello struct {
	Version uint8
	Token   string
}

// AppendHello appends a HELLO frame.
func AppendHello(dst []byte, h Hello) []byte {
	tok := h.Token
	if len(tok) > MaxTokenLen {
		tok = tok[:MaxTokenLen]
	}
	dst = AppendFrameHeader(dst, FrameHello, 2+len(tok))
	dst = append(dst, h.Version, byte(len(tok)))
	return append(dst, tok...)
}

// ParseHello parses a HELLO payload.
func ParseHello(b []byte) (Hello, error) {
	if len(b) < 2 || len(b) != 2+int(b[1]) {
		return Hello{}, ErrMalformed
	}
	return Hello{Version: b[0], Token: string(b[2:])}, nil
}

// HelloOK is the server's acceptance.
type HelloOK struct {
	Version      uint8
	CachePackets uint32 // how many packets per stream the server keeps
}

// AppendHelloOK appends a HELLO_OK frame.
func AppendHelloOK(dst []byte, h HelloOK) []byte {
	dst = AppendFrameHeader(dst, FrameHelloOK, 5)
	dst = append(dst, h.Version)
	return binary.BigEndian.AppendUint32(dst, h.CachePackets)
}

// ParseHelloOK parses a HELLO_OK payload.
func ParseHelloOK(b []byte) (HelloOK, error) {
	if len(b) != 5 {
		return HelloOK{}, ErrMalformed
	}
	return HelloOK{Version: b[0], CachePackets: binary.BigEndian.Uint32(b[1:])}, nil
}

// StreamInfo names one stream the server caches.
type StreamInfo struct {
	SSRC uint32
	Name string
}

// AppendStreams appends a STREAMS frame (at most MaxStreams entries; names
// longer than MaxNameLen are cut).
func AppendStreams(dst []byte, list []StreamInfo) []byte {
	list = list[:min(len(list), MaxStreams)]
	n := 2
	for _, s := range list {
		n += 5 + min(len(s.Name), MaxNameLen)
	}
	dst = AppendFrameHeader(dst, FrameStreams, n)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(list)))
	for _, s := range list {
		name := s.Name[:min(len(s.Name), MaxNameLen)]
		dst = binary.BigEndian.AppendUint32(dst, s.SSRC)
		dst = append(dst, byte(len(name)))
		dst = append(dst, name...)
	}
	return dst
}

// ParseStreams parses a STREAMS payload.
func ParseStreams(b []byte) ([]StreamInfo, error) {
	if len(b) < 2 {
		return nil, ErrMalformed
	}
	count := int(binary.BigEndian.Uint16(b))
	if count > MaxStreams || count*5 > len(b)-2 {
		return nil, ErrMalformed
	}
	b = b[2:]
	out := make([]StreamInfo, 0, count)
	for range count {
		if len(b) < 5 || len(b) < 5+int(b[4]) {
			return nil, ErrMalformed
		}
		n := int(b[4])
		out = append(out, StreamInfo{SSRC: binary.BigEndian.Uint32(b), Name: string(b[5 : 5+n])})
		b = b[5+n:]
	}
	if len(b) != 0 {
		return nil, ErrMalformed
	}
	return out, nil
}

// InitReq asks for one stream's init tags, by SSRC (non-zero) or else by name.
type InitReq struct {
	SSRC uint32
	Name string
}

// AppendInitReq appends an INIT_REQ frame.
func AppendInitReq(dst []byte, r InitReq) []byte {
	name := r.Name[:min(len(r.Name), MaxNameLen)]
	dst = AppendFrameHeader(dst, FrameInitReq, 5+len(name))
	dst = binary.BigEndian.AppendUint32(dst, r.SSRC)
	dst = append(dst, byte(len(name)))
	return append(dst, name...)
}

// ParseInitReq parses an INIT_REQ payload.
func ParseInitReq(b []byte) (InitReq, error) {
	if len(b) < 5 || len(b) != 5+int(b[4]) {
		return InitReq{}, ErrMalformed
	}
	return InitReq{SSRC: binary.BigEndian.Uint32(b), Name: string(b[5:])}, nil
}

// InitStatus says what an INIT reply holds.
type InitStatus uint8

const (
	InitFound   InitStatus = 0 // tags follow (some may be empty)
	InitUnknown InitStatus = 1 // no such stream
	InitNone    InitStatus = 2 // stream known, no init tags seen yet
)

// InitTags are the init tags INIT carries, each a whole FLV tag or empty:
// the stream's onMetaData, video and audio sequence headers.
type InitTags struct {
	Metadata []byte
	Video    []byte
	Audio    []byte
}

// Init is the reply to INIT_REQ.
type Init struct {
	Status InitStatus
	SSRC   uint32
	Name   string
	Tags   InitTags
}

// AppendInit appends an INIT frame. Tags over MaxInitTag are sent empty.
func AppendInit(dst []byte, r Init) []byte {
	name := r.Name[:min(len(r.Name), MaxNameLen)]
	tags := [3][]byte{r.Tags.Metadata, r.Tags.Video, r.Tags.Audio}
	n := 1 + 4 + 1 + len(name)
	for i, t := range tags {
		if len(t) > MaxInitTag {
			tags[i] = nil
		}
		n += 4 + len(tags[i])
	}
	dst = AppendFrameHeader(dst, FrameInit, n)
	dst = append(dst, byte(r.Status))
	dst = binary.BigEndian.AppendUint32(dst, r.SSRC)
	dst = append(dst, byte(len(name)))
	dst = append(dst, name...)
	for _, t := range tags {
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(t)))
		dst = append(dst, t...)
	}
	return dst
}

// ParseInit parses an INIT payload; the tags are copies.
func ParseInit(b []byte) (Init, error) {
	var r Init
	if len(b) < 6 || len(b) < 6+int(b[5]) {
		return r, ErrMalformed
	}
	r.Status = InitStatus(b[0])
	r.SSRC = binary.BigEndian.Uint32(b[1:])
	n := int(b[5])
	r.Name = string(b[6 : 6+n])
	b = b[6+n:]
	var tags [3][]byte
	for i := range tags {
		if len(b) < 4 {
			return Init{}, ErrMalformed
		}
		l := binary.BigEndian.Uint32(b)
		if l > MaxInitTag || uint64(l) > uint64(len(b)-4) {
			return Init{}, ErrMalformed
		}
		if l > 0 {
			tags[i] = append([]byte(nil), b[4:4+l]...)
		}
		b = b[4+l:]
	}
	if len(b) != 0 {
		return Init{}, ErrMalformed
	}
	r.Tags = InitTags{Metadata: tags[0], Video: tags[1], Audio: tags[2]}
	return r, nil
}
