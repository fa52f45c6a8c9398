package rtmpsource

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// chunkGuard follows the RTMP chunk stream a client sends, byte for byte as
// go-rtmp will decode it, so that a message longer than the cap is refused
// from its header alone, before go-rtmp buffers a single byte of it. go-rtmp
// v0.0.7 has a MaxMessageSize setting but never checks it.
type chunkGuard struct {
	maxMessage int // largest message body accepted
	maxPending int // bytes of unfinished messages held across chunk streams

	state   int
	skip    int // handshake bytes still to pass (C0+C1+C2)
	hdr     [16]byte
	hn      int // bytes collected into hdr
	need    int // bytes hdr must hold for the current part
	fmt     byte
	csid    int
	chunk   int // chunk size announced by the client
	left    int // payload bytes left in the current chunk
	pending int
	cur     *csState
	streams map[int]*csState
}

type csState struct {
	length int  // current message length
	typ    byte // current message type id
	got    int  // bytes of the current message received
	done   bool // the message completed; the next header starts another
	ext    [4]byte
}

const (
	gsHandshake = iota
	gsBasic
	gsMessage
	gsExtTS
	gsPayload
)

// handshakeLen is what a client sends before its first chunk: C0, C1, C2.
const handshakeLen = 1 + 1536 + 1536

const maxChunkStreams = 64

var (
	errTooLarge  = errors.New("rtmp message exceeds max_message_size")
	errMalformed = errors.New("malformed rtmp chunk stream")
)

func newChunkGuard(maxMessage int) *chunkGuard {
	return &chunkGuard{
		maxMessage: maxMessage,
		maxPending: 2 * maxMessage,
		skip:       handshakeLen,
		chunk:      128,
		streams:    map[int]*csState{},
	}
}

// feed checks the next bytes of the stream. An error is final.
func (g *chunkGuard) feed(p []byte) error {
	for len(p) > 0 {
		switch g.state {
		case gsHandshake:
			n := min(len(p), g.skip)
			g.skip -= n
			p = p[n:]
			if g.skip == 0 {
				g.state, g.hn, g.need = gsBasic, 0, 1
			}
		case gsBasic:
			g.hdr[g.hn] = p[0]
			g.hn++
			p = p[1:]
			if g.hn == 1 {
				switch g.hdr[0] & 0x3f {
				case 0:
					g.need = 2
				case 1:
					g.need = 3
				}
			}
			if g.hn < g.need {
				continue
			}
			g.fmt = g.hdr[0] >> 6
			switch g.need {
			case 1:
				g.csid = int(g.hdr[0] & 0x3f)
			case 2:
				g.csid = int(g.hdr[1]) + 64
			case 3:
				g.csid = int(g.hdr[2])*256 + int(g.hdr[1]) + 64
			}
			g.hn = 0
			g.need = [4]int{11, 7, 3, 0}[g.fmt]
			g.state = gsMessage
			if g.need == 0 {
				if err := g.startChunk(); err != nil {
					return err
				}
			}
		case gsMessage, gsExtTS:
			n := min(len(p), g.need-g.hn)
			copy(g.hdr[g.hn:], p[:n])
			g.hn += n
			p = p[n:]
			if g.hn < g.need {
				continue
			}
			if g.state == gsMessage && g.hdr[0] == 0xff && g.hdr[1] == 0xff && g.hdr[2] == 0xff {
				// extended timestamp follows (go-rtmp reads it for fmt 0–2 only)
				g.state, g.need = gsExtTS, g.need+4
				continue
			}
			if err := g.startChunk(); err != nil {
				return err
			}
		case gsPayload:
			n := min(len(p), g.left)
			cs := g.cur
			if cs.typ == 1 && cs.got < 4 { // Set Chunk Size: keep its value
				copy(cs.ext[cs.got:], p[:min(n, 4-cs.got)])
			}
			cs.got += n
			g.pending += n
			g.left -= n
			p = p[n:]
			if g.pending > g.maxPending {
				return fmt.Errorf("%w: %d bytes of unfinished messages", errTooLarge, g.pending)
			}
			if g.left > 0 {
				continue
			}
			if cs.got == cs.length {
				cs.done = true
				g.pending -= cs.got
				if cs.typ == 1 && cs.length >= 4 {
					size := int(binary.BigEndian.Uint32(cs.ext[:]) & 0x7fffffff)
					if size == 0 {
						return fmt.Errorf("%w: chunk size 0", errMalformed)
					}
					g.chunk = min(size, 0xffffff)
				}
			}
			g.state, g.hn, g.need = gsBasic, 0, 1
		}
	}
	return nil
}

// startChunk applies a complete chunk header, as go-rtmp's readChunk does.
func (g *chunkGuard) startChunk() error {
	cs := g.streams[g.csid]
	if cs == nil {
		if len(g.streams) >= maxChunkStreams {
			return fmt.Errorf("%w: more than %d chunk streams", errMalformed, maxChunkStreams)
		}
		cs = &csState{}
		g.streams[g.csid] = cs
	}
	if cs.done {
		cs.got, cs.done = 0, false
	}
	if g.fmt <= 1 {
		length := int(g.hdr[3])<<16 | int(g.hdr[4])<<8 | int(g.hdr[5])
		if length > g.maxMessage {
			return fmt.Errorf("%w: %d bytes", errTooLarge, length)
		}
		cs.length, cs.typ = length, g.hdr[6]
	}
	expect := cs.length - cs.got
	if expect <= 0 {
		return fmt.Errorf("%w: empty chunk on chunk stream %d", errMalformed, g.csid)
	}
	g.cur = cs
	g.left = min(expect, g.chunk)
	g.state = gsPayload
	return nil
}
