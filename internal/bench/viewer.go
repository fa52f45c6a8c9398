package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mediapipe/mediapipe/core/media/flv"
)

// viewer is one HTTP-FLV player: it reads the edge's response over a real
// socket, parses every tag and checks it against the publisher's ledger.
type viewer struct {
	addr   string // edge host:port
	path   string // /live/s001.flv
	ledger book
	idle   time.Duration // a read that waits longer ends the viewer

	lat   *histogram   // publisher write → viewer parse, per matched media tag
	ttff  atomic.Int64 // ns from connect to the first video keyframe; 0 until then
	tags  atomic.Uint64
	bytes atomic.Uint64 // response body bytes (FLV header, tags, sizes)

	matched, corrupt, unknown, dup atomic.Uint64
	backlog                        atomic.Uint64 // matched tags published before the viewer connected
	first, last                    atomic.Int64  // sequence numbers of the first and last matched tags
	connected                      atomic.Bool
	joinedAt                       atomic.Int64           // UnixNano of the edge's 200 OK; 0 until then
	ended                          atomic.Pointer[string] // why the response ended, if it did
	endedAt                        atomic.Int64           // UnixNano of that end
	// cut, when not 0, is 1 + the last sequence number the viewer is due
	// (bench --edges sets it when publishing is done); gotDue counts the
	// matched tags before it.
	cut    atomic.Int64
	gotDue atomic.Uint64
}

var errNotFound = errors.New("stream not on the edge yet")

// run joins (retrying while the edge does not know the stream yet) and
// reads until the response ends or ctx is cancelled.
func (v *viewer) run(ctx context.Context) {
	v.first.Store(-1)
	v.last.Store(-1)
	for {
		err := v.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errNotFound) && !v.connected.Load() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		if err == nil {
			err = io.EOF
		}
		msg := endReason(err, v.connected.Load())
		v.endedAt.Store(time.Now().UnixNano())
		v.ended.Store(&msg)
		return
	}
}

func (v *viewer) session(ctx context.Context) error {
	d := net.Dialer{Timeout: 5 * time.Second}
	start := time.Now()
	c, err := d.DialContext(ctx, "tcp", v.addr)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(v.idle))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: mediapipe-bench\r\nAccept: */*\r\n\r\n", v.path, v.addr); err != nil {
		return err
	}
	br := bufio.NewReaderSize(c, 16<<10) // thousands of viewers: keep each small
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return errNotFound
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	v.connected.Store(true)
	v.joinedAt.CompareAndSwap(0, time.Now().UnixNano())
	return v.read(c, resp.Body, start)
}

// read parses FLV from the body into reused buffers: the bench's own
// viewers should add as little garbage as possible to what it measures.
func (v *viewer) read(c net.Conn, body io.Reader, start time.Time) error {
	var hdr [flv.HeaderSize]byte
	var fh [13]byte
	buf := make([]byte, 0, 4<<10) // grows to the largest tag
	if _, err := io.ReadFull(body, fh[:]); err != nil {
		return fmt.Errorf("reading FLV header: %w", err)
	}
	if fh[0] != 'F' || fh[1] != 'L' || fh[2] != 'V' {
		return errors.New("response is not FLV")
	}
	if skip := int(binary.BigEndian.Uint32(fh[5:9])) - 9; skip > 0 {
		if _, err := io.CopyN(io.Discard, body, int64(skip)); err != nil {
			return err
		}
	}
	v.bytes.Add(13)
	for {
		_ = c.SetDeadline(time.Now().Add(v.idle))
		if _, err := io.ReadFull(body, hdr[:]); err != nil {
			return err
		}
		h, _ := flv.ParseHeader(hdr[:])
		n := int(h.DataSize) + 4 // body + PreviousTagSize
		if cap(buf) < n {
			buf = make([]byte, 0, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(body, buf); err != nil {
			return err
		}
		now := time.Now().UnixNano()
		tagBody := buf[:h.DataSize]
		v.tags.Add(1)
		v.bytes.Add(uint64(flv.HeaderSize + n))
		if int(binary.BigEndian.Uint32(buf[h.DataSize:])) != flv.HeaderSize+int(h.DataSize) {
			v.corrupt.Add(1) // PreviousTagSize disagrees: the stream is out of step
		}
		if h.Type == flv.TypeVideo && v.ttff.Load() == 0 {
			if flv.IsVideoKeyframe(tagBody) {
				v.ttff.Store(max(int64(time.Since(start)), 1))
			}
		}
		if h.Type != flv.TypeAudio && h.Type != flv.TypeVideo {
			continue // script data may be rewritten on the way
		}
		if isSequenceHeader(h.Type, tagBody) {
			continue // init tags are sent once, outside the ledger
		}
		r, seq, ok := v.ledger.lookup(h.Type, h.Timestamp)
		if !ok {
			v.unknown.Add(1)
			continue
		}
		if r.size != len(tagBody) || r.hash != hashBody(tagBody) {
			v.corrupt.Add(1)
			continue
		}
		if seq <= int(v.last.Load()) {
			v.dup.Add(1)
			continue
		}
		if v.first.Load() < 0 {
			v.first.Store(int64(seq))
		}
		v.last.Store(int64(seq))
		v.matched.Add(1)
		if c := v.cut.Load(); c == 0 || int64(seq) < c {
			v.gotDue.Add(1)
		}
		if r.at < start.UnixNano() {
			v.backlog.Add(1) // the sink's GOP cache: old by design, not latency
			continue
		}
		v.lat.add(time.Duration(now - r.at))
	}
}

func isSequenceHeader(typ uint8, body []byte) bool {
	switch typ {
	case flv.TypeVideo:
		vi, ok := flv.ParseVideo(body)
		return ok && vi.IsSequenceHeader()
	case flv.TypeAudio:
		a, ok := flv.ParseAudio(body)
		return ok && a.IsSequenceHeader()
	}
	return false
}

// missing is how many published tags between the viewer's first and last
// matched ones it never got.
func (v *viewer) missing() int {
	f, l := v.first.Load(), v.last.Load()
	if f < 0 || v.matched.Load() == 0 {
		return 0
	}
	return int(l-f+1) - int(v.matched.Load())
}

// endReason names why a viewer ended, without addresses or ports, so the
// report can count viewers by reason.
func endReason(err error, joined bool) string {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF):
		return "response ended"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "response cut mid-tag"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.As(err, &ne) && ne.Timeout():
		if !joined {
			return "no answer to connect or GET within --viewer-timeout"
		}
		return "no data for --viewer-timeout"
	}
	return addrRE.ReplaceAllString(err.Error(), "ADDR")
}

var addrRE = regexp.MustCompile(`\[?[0-9a-fA-F.:]+\]?:\d+`)
