package httpflvsink

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/internal/uring"
	"github.com/mediapipe/mediapipe/stages/internal/streaminfo"
)

// stream is one served stream: its viewers, its in-band init tags and the
// tags since its last keyframe. Run writes it; viewers join and leave under mu.
type stream struct {
	s  *Stage
	cs *core.Stream

	// What the stream list shows of it: Run observes every tag; initSeen
	// (Run's own): the init tags the stream brought as metadata were read.
	info     *streaminfo.Tracker
	initSeen bool

	mu       sync.Mutex
	viewers  []*viewer
	init     [3]*tagRef // in-band onMetaData, video and audio sequence headers
	gop      []*tagRef  // from the last keyframe on; nil entries never
	gopBytes int
	gopOK    bool // gop starts at a keyframe and is complete
	hasVideo bool
	hasAudio bool
	ended    bool
	born     time.Time // when the sink saw the stream start
	pending  int       // bytes queued to viewers since the last flush

	// Run's own: tags are queued since dirtySince (the stream is in the
	// stage's dirty list), flush_bytes of them (flush at once); the
	// last flush; the viewers at the last push.
	dirty, urgent         bool
	dirtySince, lastFlush time.Time
	audience              int
	// Run's own, for audio [0] and video [1]: when the last tag came, and
	// how far apart they come (tagPace); together they say when the
	// stream's next burst is due.
	lastAt [2]time.Time
	pace   [2]time.Duration
	// Run's own: whether the queued bursts are held for the next one
	// (coalesceViewers and more), decided at the tag that came at decided.
	hold    bool
	decided time.Time

	// The stream's rate, which sizes its viewers' send buffers and says
	// how far behind live they may fall (lag.go).
	inBytes  int64        // pushed since rateFrom, under mu
	rateFrom time.Time    // under mu
	rate     atomic.Int64 // bytes a second; 0 until a second was seen
}

func newStream(s *Stage, cs *core.Stream) *stream {
	now := time.Now()
	return &stream{s: s, cs: cs, born: now, info: streaminfo.New(cs.Name, now)}
}

// observe shows tag (a whole FLV tag, checked) in the stream list. An edge
// that joined late learns the sequence headers from the stream's init
// rather than its tags: those are read once they are there.
func (st *stream) observe(tag []byte, now time.Time) {
	if !st.initSeen {
		if in := st.cs.Init(); in != nil {
			st.initSeen = true
			for _, t := range [...][]byte{in.Video, in.Audio} {
				if len(t) > 0 {
					st.info.Observe(t, now)
				}
			}
		}
	}
	st.info.Observe(tag, now)
}

// viewer is one HTTP response being fed. Run appends tags to q; a writer
// takes q and sends it in one writev. The writer is the stage's flusher
// while the socket takes everything at once (no goroutine wake-up per tag
// or per viewer), and the viewer's own goroutine when it does not.
type viewer struct {
	conn    net.Conn
	tcp     net.Conn        // the TCP connection under conn (conn itself without TLS)
	raw     syscall.RawConn // nil: only the viewer's goroutine writes
	tlsw    *bufio.Writer   // over conn with TLS: a TLS record per buffer, not per tag
	st      *stream
	wake    chan struct{} // cap 1: the viewer's goroutine has something to do
	waitKey bool          // skip media until a keyframe (no GOP to start from); under stream.mu

	mu      sync.Mutex
	q       []*tagRef // queued for the writer
	owner   uint8     // who may use out/off: ownIdle, ownFlusher or ownViewer
	nout    int       // len(out) as seen under mu, for the queue bound
	ended   bool      // the stream ended: send what is queued, then close
	dead    bool      // shed or cut: stop at once
	drainBy time.Time // when ended: the last moment to finish sending
	enq     int64     // tag bytes ever queued

	out []*tagRef // being written, owned by owner
	off int       // bytes of out[0] already written

	// How far behind live v is (lag.go), owned by owner like out.
	written   int64     // tag bytes written, chunk framing left out
	probe     sockProbe // reads the socket's send queue
	sndbuf    int       // the send buffer asked for, 0 for the system's
	sndbufSet bool      // and the socket took it
	checked   time.Time // the last look at the send queue

	// Chunked framing (HTTP/1.1), owned by owner like out. A chunk covers
	// whole tags of out, one chunk per coalesced write; every size line
	// starts with the CRLF that closes what came before it (the response
	// head, then the previous chunk), so what a partial write leaves is only
	// the rest of a size line (pre) and of the data (left).
	chunked bool
	pre     []byte // the current chunk's size line, what is not yet written
	left    int    // data bytes of the current chunk not yet written
	preBuf  [2 + 16 + 2]byte

	// The flusher's own descriptor of the socket for batched sends
	// (batch.go): made and used while it owns v, closed under mu when
	// it no longer does.
	sock   int
	sockSt uint8 // sockNone, sockOpen or sockFailed
	gone   bool  // viewerLeft ran: the flusher closes sock when done
}

const (
	ownIdle    uint8 = iota // nobody writes; the flusher may take q
	ownFlusher              // the flusher is writing out
	ownViewer               // the viewer's goroutine is writing out (slow or starting)
)

func (v *viewer) signal() {
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

// cutBy is the drop counter of a viewer cut because a write to it failed
// with err: a missed deadline (write_timeout, or the drain at the end) makes
// it a slow viewer, like a queue overflow; any other failure means it hung
// up or reset.
func (s *Stage) cutBy(err error) *core.DropCounter {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return s.mSlow
	}
	return s.mGone
}

// cut marks v dead after its own goroutine's write failed with err and
// counts it, unless it was already dead: a shed viewer's write fails
// too, and was counted when it was shed.
func (s *Stage) cut(v *viewer, err error) {
	v.mu.Lock()
	was := v.dead
	v.dead = true
	v.mu.Unlock()
	if !was {
		s.cutBy(err).Inc()
	}
}

// abort closes a viewer's TCP connection (v.tcp, under TLS if any) without
// handing what is still in its socket buffer to the kernel to trickle out: a
// cut viewer costs nothing more. Under TLS the socket is closed beneath the
// tls.Conn: its Close would wait for a write in progress and then try to
// send an alert to a viewer that takes nothing.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// push hands r, arrived at now, to the GOP cache and every viewer's queue;
// Run's reference ends here. It never blocks on a viewer: one too far behind is shed.
func (st *stream) push(r *tagRef, now time.Time) {
	typ := r.p.Type
	kind := flv.InitKindOf(typ, r.b[flv.HeaderSize:len(r.p.Data)-4])
	limit := st.s.cfg.ViewerQueue
	st.mu.Lock()
	switch typ {
	case flv.TypeVideo:
		st.hasVideo = true
	case flv.TypeAudio:
		st.hasAudio = true
	}
	if r.key {
		st.s.mKeys.Inc()
	}
	if kind != flv.InitNone {
		if old := st.init[kind-1]; old != nil {
			old.release()
		}
		r.refs.Add(1)
		st.init[kind-1] = r
	} else if st.s.cfg.GOPCache {
		st.cache(r)
	}
	if n := len(st.viewers); n > 0 {
		// One atomic add for all viewers, taken before any of them can
		// write and release; Run's own reference keeps r alive meanwhile.
		r.refs.Add(int32(n))
		unused := int32(0)
		kept := st.viewers[:0]
		for _, v := range st.viewers {
			if v.waitKey && kind == flv.InitNone && typ != flv.TypeScript {
				if !r.key {
					unused++
					kept = append(kept, v)
					continue
				}
				v.waitKey = false
			}
			v.mu.Lock()
			switch {
			case v.dead:
				v.mu.Unlock()
				unused++
				continue // gone by itself; its goroutine cleans up
			case len(v.q)+v.nout >= limit:
				v.dead = true // under the same lock as the check: counted once
				v.mu.Unlock()
				unused++
				st.s.mSlow.Inc()
				abort(v.tcp)
				v.signal()
				continue
			}
			v.q = append(v.q, r)
			v.enq += int64(len(r.b))
			v.mu.Unlock()
			kept = append(kept, v)
		}
		clear(st.viewers[len(kept):])
		st.viewers = kept
		if unused > 0 {
			r.refs.Add(-unused)
		}
		st.pending += len(r.b)
	}
	st.inBytes += int64(len(r.b))
	st.measureRate(now)
	if st.pending > 0 {
		if !st.dirty {
			st.dirty, st.dirtySince = true, now
			st.s.dirty = append(st.s.dirty, st)
		}
		st.audience = len(st.viewers)
		if st.pending >= st.s.cfg.FlushBytes || st.s.cfg.FlushInterval <= 0 {
			st.urgent = true
		}
	}
	st.mu.Unlock()
	r.release()
}

// cache keeps r in the current GOP (called with mu held).
func (st *stream) cache(r *tagRef) {
	if r.key {
		st.dropGOP()
		st.gopOK = true
	}
	if !st.gopOK {
		return
	}
	st.gopBytes += len(r.b)
	if st.gopBytes > st.s.cfg.GOPMaxBytes {
		st.dropGOP() // too long to cache: new viewers wait for the next keyframe
		return
	}
	r.refs.Add(1)
	st.gop = append(st.gop, r)
}

func (st *stream) dropGOP() {
	for i, r := range st.gop {
		r.release()
		st.gop[i] = nil
	}
	st.gop = st.gop[:0]
	st.gopBytes = 0
	st.gopOK = false
}

// startWait bounds how long after a stream's start a viewer's response
// waits for it to be startable (see awaitStart): an edge learns of a
// stream joined mid-way from its first packet, and of its init tags one
// repair round trip later.
const startWait = 2 * time.Second

// startable says a viewer joining now gets a playable start: the stream's
// sequence headers are known (in-band or fetched from the cloud) or a GOP
// is cached. Before that a viewer would get media its player cannot
// decode, with no init and no keyframe to start from.
func (st *stream) startable() bool {
	if st.cs.Init() != nil {
		return true
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.ended || st.gopOK || st.init != [3]*tagRef{}
}

// awaitStart holds a joining viewer until st is startable, or until the
// stream is startWait old (one that never sends sequence headers, as
// legacy codecs do not, is served as it is), or the request is gone. Every
// waiter counts against max_viewers.
func (st *stream) awaitStart(ctx context.Context) {
	limit := time.Until(st.born.Add(startWait))
	if limit <= 0 || st.startable() {
		return
	}
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !st.startable() {
		select {
		case <-tick.C:
		case <-deadline.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// join registers v and returns what it must be sent first: the FLV header,
// the init tags and the cached GOP. refs are held for the caller.
func (st *stream) join(v *viewer) (bufs [][]byte, refs []*tagRef, ok bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ended {
		return nil, nil, false
	}
	hasAudio, hasVideo := st.hasAudio || st.init[flv.InitAudio-1] != nil, st.hasVideo || st.init[flv.InitVideo-1] != nil
	fallback := st.cs.Init()
	if fallback != nil {
		hasAudio = hasAudio || fallback.Audio != nil
		hasVideo = hasVideo || fallback.Video != nil
	}
	// A stream known to carry video starts a viewer at a keyframe; the
	// video sequence header (from the tags or the cloud's init fetch) says
	// so before the first video tag has arrived.
	videoKnown := hasVideo
	if !hasAudio && !hasVideo {
		hasAudio, hasVideo = true, true
	}
	bufs = append(bufs, flv.FileHeader(hasAudio, hasVideo))
	for i, r := range st.init {
		if r != nil {
			r.refs.Add(1)
			refs = append(refs, r)
			bufs = append(bufs, r.b)
			continue
		}
		// A stream whose start was relayed before this edge joined brings
		// its init tags as stream metadata instead.
		var tag []byte
		if fallback != nil {
			tag = [3][]byte{fallback.Metadata, fallback.Video, fallback.Audio}[i]
		}
		if len(tag) > 0 {
			bufs = append(bufs, flv.AppendPreviousTagSize(append([]byte(nil), tag...), len(tag)))
		}
	}
	if st.s.cfg.GOPCache && st.gopOK && len(st.gop) > 0 {
		for _, r := range st.gop {
			r.refs.Add(1)
			refs = append(refs, r)
			bufs = append(bufs, r.b)
		}
	} else {
		v.waitKey = videoKnown
	}
	st.viewers = append(st.viewers, v)
	return bufs, refs, true
}

// leave removes v from the stream if Run has not already.
func (st *stream) leave(v *viewer) {
	st.mu.Lock()
	for i, w := range st.viewers {
		if w == v {
			last := len(st.viewers) - 1
			st.viewers[i] = st.viewers[last]
			st.viewers[last] = nil
			st.viewers = st.viewers[:last]
			break
		}
	}
	st.mu.Unlock()
}

// finish ends the stream: viewers get what is queued (within write_timeout),
// then their response ends.
func (st *stream) finish() {
	drainBy := time.Now().Add(st.s.cfg.WriteTimeout)
	st.mu.Lock()
	st.endViewers(drainBy)
	st.dropGOP()
	for i, r := range st.init {
		if r != nil {
			r.release()
			st.init[i] = nil
		}
	}
	st.mu.Unlock()
}

// endViewers lets go of every viewer, each to send what it has queued by
// drainBy and end its response, and takes no more (mu held).
func (st *stream) endViewers(drainBy time.Time) {
	st.ended = true
	for i, v := range st.viewers {
		v.mu.Lock()
		v.ended, v.drainBy = true, drainBy
		v.mu.Unlock()
		v.signal()
		st.viewers[i] = nil
	}
	st.viewers = nil
}

// shutdownDrain bounds how long viewers get, when the stage stops, to take
// what is queued and their response's end.
const shutdownDrain = time.Second

// kickAll ends every viewer's response at once (shutdown): players see a
// clean end, and a viewer that cannot take it within shutdownDrain is cut.
func (st *stream) kickAll() {
	drainBy := time.Now().Add(min(st.s.cfg.WriteTimeout, shutdownDrain))
	st.mu.Lock()
	st.endViewers(drainBy)
	st.mu.Unlock()
}

// The body is chunked for HTTP/1.1 clients, so the stream's end is the
// body's clean end (ffmpeg otherwise reports "Stream ends prematurely" and
// an I/O error); HTTP/1.0 clients know no chunks and get the body delimited
// by the connection's close.
const (
	responseHead = "HTTP/1.1 200 OK\r\n" +
		"Content-Type: video/x-flv\r\n" +
		"Access-Control-Allow-Origin: *\r\n" +
		"Cache-Control: no-cache, no-store\r\n" +
		"Connection: close\r\n"
	// chunkedHead lacks the head's closing CRLF: the first size line
	// starts with it, as every size line does.
	chunkedHead = responseHead + "Transfer-Encoding: chunked\r\n"
	closedHead  = responseHead + "\r\n"
	// lastChunk closes the last data chunk and ends the body.
	lastChunk = "\r\n0\r\n\r\n"
)

const notFoundHead = "HTTP/1.1 404 Not Found\r\n" +
	"Content-Length: 0\r\n" +
	"Access-Control-Allow-Origin: *\r\n" +
	"Connection: close\r\n\r\n"

// serveViewer takes the connection over and feeds the stream to it until the
// stream ends, the viewer goes or is shed. The goroutine sleeps while the
// flusher keeps the viewer up to date, and writes itself (blocking, with
// write_timeout) only at the start and when the socket is full.
func (s *Stage) serveViewer(w http.ResponseWriter, st *stream, remote string, chunked bool) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "cannot stream on this connection", http.StatusInternalServerError)
		return
	}
	v := &viewer{conn: conn, tcp: conn, st: st, wake: make(chan struct{}, 1), owner: ownViewer, chunked: chunked}
	if tc, ok := conn.(*tls.Conn); ok {
		// The flusher's raw writes would bypass TLS: v.raw stays nil and
		// v's goroutine writes everything, through the tls.Conn, as it does
		// on systems without writev. Plain HTTP viewers are not touched.
		v.tcp = tc.NetConn()
		v.tlsw = bufio.NewWriterSize(conn, tlsWriteSize)
	}
	defer v.close()
	if tc, ok := v.tcp.(*net.TCPConn); ok {
		// Go sets TCP_NODELAY on every socket. Off (Nagle on, as
		// nginx-rtmp and SRS leave it), a write while the viewer has not
		// acknowledged the last one joins the kernel's queue instead of
		// going out as its own segment: a player that reads as data
		// comes ACKs at once and waits for nothing, and we write whole
		// bursts anyway, so there is no small-write train to delay.
		_ = tc.SetNoDelay(s.cfg.TCPNoDelay)
	}
	if sc, ok := v.tcp.(syscall.Conn); ok {
		v.probe.rc, _ = sc.SyscallConn()
		if haveWritev && v.tlsw == nil {
			v.raw = v.probe.rc
		}
	}
	// Before the first byte: what a viewer can pin in the kernel is bounded
	// from the start.
	v.setSendBuffer(sendBufferFor(st.rate.Load()))
	first, held, ok := st.join(v)
	if !ok {
		_, _ = conn.Write([]byte(notFoundHead))
		return
	}
	s.mViewers.Inc()
	s.mServed.Inc()
	s.env.Log.Debug("viewer joined", "stream", st.cs.Name, "remote", remote)
	defer s.register(v, remote)()
	var werr error // this goroutine's failed write, which cut the viewer
	defer func() { s.viewerLeft(st, v, remote, werr) }()
	werr = s.feed(v, first, held)
}

// close closes v's connection. Under TLS, Close sends close_notify and
// waits up to 5 s for a socket with no room: a viewer that stopped reading
// right at its end gets shutdownDrain, then its socket is cut.
func (v *viewer) close() {
	if v.tlsw != nil {
		t := time.AfterFunc(shutdownDrain, func() { abort(v.tcp) })
		defer t.Stop()
	}
	_ = v.conn.Close()
}

// viewerLeft takes v off st and lets go of the tags it still holds.
func (s *Stage) viewerLeft(st *stream, v *viewer, remote string, werr error) {
	st.leave(v)
	v.mu.Lock()
	v.dead = true
	v.gone = true
	releaseAll(v.q)
	v.q = nil
	sock := -1
	if v.owner != ownFlusher { // else the flusher releases out and sock when it is done
		releaseAll(v.out)
		v.out = nil
		sock = v.takeSock()
	}
	v.mu.Unlock()
	closeSock(sock)
	s.mViewers.Dec()
	s.env.Log.Debug("viewer left", "stream", st.cs.Name, "remote", remote, "err", werr)
}

// feed writes the response head and the tags join gave v, then takes turns
// with the flusher until v is done; the error is the failed write that cut v.
func (s *Stage) feed(v *viewer, first [][]byte, held []*tagRef) error {
	bufs, err := s.writeHead(v, first, held)
	if err != nil {
		return err
	}
	for {
		var done bool
		bufs, done, err = s.sendQueued(v, bufs)
		if done {
			return err
		}
		if !v.await() {
			return nil
		}
	}
}

// writeHead sends the response head and first (init tags and cached GOP),
// then lets go of held; it returns bufs emptied for reuse.
func (s *Stage) writeHead(v *viewer, first [][]byte, held []*tagRef) ([][]byte, error) {
	bufs := [][]byte{[]byte(closedHead)}
	if v.chunked {
		size := 0
		for _, b := range first {
			size += len(b)
		}
		bufs = append(bufs[:0], []byte(chunkedHead), v.sizeLine(size))
	}
	bufs = append(bufs, first...)
	_, err := s.writeBlocking(v, bufs, time.Time{})
	releaseAll(held)
	if err != nil {
		s.cut(v, err)
	}
	return bufs[:0], err
}

// sendQueued writes, as v's owner (ownViewer), until nothing is queued, then
// hands v to the flusher (ownIdle). done: v is finished, being dead, at the
// end of its stream, or cut by err.
func (s *Stage) sendQueued(v *viewer, bufs [][]byte) (_ [][]byte, done bool, err error) {
	for {
		v.mu.Lock()
		if v.dead {
			v.mu.Unlock()
			return bufs, true, nil
		}
		if len(v.out) == 0 {
			v.out, v.q = v.q, v.out[:0]
			v.off = 0
		}
		// What the last write sent no longer counts against
		// viewer_queue: only the tags still to go do.
		v.nout = len(v.out)
		drainBy, enq := v.drainBy, v.enq
		if len(v.out) == 0 {
			end := v.ended
			if !end {
				v.owner, v.nout = ownIdle, 0
			}
			v.mu.Unlock()
			if !end {
				return bufs, false, nil
			}
			if v.chunked { // the body's clean end
				if _, err = s.writeBlocking(v, [][]byte{[]byte(lastChunk)}, drainBy); err != nil {
					s.cut(v, err)
				}
			}
			return bufs, true, err
		}
		v.mu.Unlock()
		if err = s.checkLag(v, time.Now(), enq); err != nil {
			v.dropOut()
			s.cut(v, err)
			abort(v.tcp)
			return bufs, true, err
		}
		bufs = v.frame(bufs[:0], v.piece(s.cfg.ViewerQueue/pieceShare))
		var n int64
		n, err = s.writeBlocking(v, bufs, drainBy)
		clear(bufs)
		if err != nil {
			// Too slow (a deadline: write_timeout, or the drain
			// at the end), or gone.
			v.dropOut()
			s.cut(v, err)
			abort(v.tcp)
			return bufs, true, err
		}
		v.sent(int(n))
	}
}

// await sleeps while the flusher writes for v. It returns true when v's
// goroutine is to write again (handed over, or the stream ended), false
// when v is dead.
func (v *viewer) await() bool {
	for {
		<-v.wake
		v.mu.Lock()
		switch {
		case v.dead:
			v.mu.Unlock()
			return false
		case v.owner == ownViewer: // handed over by the flusher
		case v.owner == ownIdle && (v.ended || len(v.q) > 0 && v.raw == nil):
			v.owner = ownViewer
		default: // the flusher has it, or nothing to do
			v.mu.Unlock()
			continue
		}
		v.mu.Unlock()
		return true
	}
}

// frame appends to dst the bytes of v's next write, at most maxBufs
// buffers: the rest of the chunk in progress, or a new chunk of the next
// tags; without chunking, the next tags.
func (v *viewer) frame(dst [][]byte, maxBufs int) [][]byte {
	if !v.chunked {
		return v.bufs(dst, min(len(v.out), maxBufs))
	}
	if v.left == 0 {
		size := -v.off
		for _, r := range v.out[:min(len(v.out), maxBufs-1)] {
			size += len(r.b)
		}
		if size <= 0 {
			return dst // a zero-length chunk would end the body
		}
		v.pre, v.left = v.sizeLine(size), size
	}
	if len(v.pre) > 0 {
		dst = append(dst, v.pre)
	}
	need := v.left
	for i, r := range v.out {
		if len(dst) == maxBufs {
			break // the rest of the chunk in a later write
		}
		b := r.b
		if i == 0 {
			b = b[v.off:]
		}
		dst = append(dst, b)
		if need -= len(b); need <= 0 {
			break
		}
	}
	return dst
}

// A blocking write by a viewer's goroutine (sendQueued) covers at most
// maxPieceBytes, or an eighth of viewer_queue tags (at least 2), and
// the tags it sent stop counting against viewer_queue before the next one.
// A TLS viewer's goroutine took all that had queued while it wrote and
// wrote it in one go, and push counted all of it as still queued until the
// last byte was out: on a busy CPU a viewer 35 tags behind, reading all
// the while, was counted 64 behind and cut as slow. Now what is counted is
// at most one piece more than what is really still to go.
const (
	maxPieceBytes = 256 << 10 // 16 TLS records
	pieceShare    = 8
)

// piece is frame's maxBufs for v's next blocking write: the tags of out
// that fit in maxPieceBytes (at least one), at most maxTags, and the chunk's
// size line.
func (v *viewer) piece(maxTags int) int {
	n, size := 0, -v.off
	for _, r := range v.out {
		if n == maxTags || n > 0 && size+len(r.b) > maxPieceBytes {
			break
		}
		size += len(r.b)
		n++
	}
	if v.chunked && (v.left == 0 || len(v.pre) > 0) {
		n++ // the size line, when this write has one
	}
	return n
}

// sizeLine is the line that opens a chunk of size bytes, in preBuf, after
// the CRLF that closes the head or the previous chunk.
func (v *viewer) sizeLine(size int) []byte {
	b := append(v.preBuf[:0], "\r\n"...)
	b = strconv.AppendUint(b, uint64(size), 16)
	return append(b, "\r\n"...)
}

// sent accounts for n bytes of a write made from frame: the size line
// first, then the data; the tags sent whole are released and leave out.
// It returns how many.
func (v *viewer) sent(n int) int {
	if v.chunked {
		c := min(n, len(v.pre))
		v.pre = v.pre[c:]
		n -= c
		v.left -= n
	}
	v.written += int64(n)
	done := 0
	for n > 0 && done < len(v.out) {
		left := len(v.out[done].b) - v.off
		if n < left {
			v.off += n
			break
		}
		n -= left
		v.off = 0
		v.out[done].release()
		v.out[done] = nil
		done++
	}
	v.out = v.out[:copy(v.out, v.out[done:])]
	return done
}

// dropOut releases all of out (a dead viewer's), framing state included.
func (v *viewer) dropOut() {
	releaseAll(v.out)
	v.out, v.off = v.out[:0], 0
	v.pre, v.left = nil, 0
}

// bufs appends the wire bytes of out[:n] to dst, the first one from off.
func (v *viewer) bufs(dst [][]byte, n int) [][]byte {
	for i, r := range v.out[:n] {
		if i == 0 {
			dst = append(dst, r.b[v.off:])
		} else {
			dst = append(dst, r.b)
		}
	}
	return dst
}

func releaseAll(rs []*tagRef) {
	for i, r := range rs {
		r.release()
		rs[i] = nil
	}
}

// tlsWriteSize is the buffer a TLS viewer's writes are gathered in: one
// full TLS record (16 KiB of payload), so a burst of small tags costs a
// record and a system call per 16 KiB instead of one per tag.
const tlsWriteSize = 16 << 10

// writeBlocking sends bufs to v (writev, or through its TLS buffer) within
// write_timeout, and by drainBy if set; it returns the bytes written. A
// missed deadline is an error wrapping os.ErrDeadlineExceeded.
func (s *Stage) writeBlocking(v *viewer, bufs [][]byte, drainBy time.Time) (int64, error) {
	conn := v.conn
	dl := time.Now().Add(s.cfg.WriteTimeout)
	if !drainBy.IsZero() && drainBy.Before(dl) {
		dl = drainBy
	}
	_ = conn.SetWriteDeadline(dl)
	var n int64
	var err error
	if v.tlsw != nil {
		n, err = writeGathered(v.tlsw, bufs)
	} else {
		nb := net.Buffers(bufs)
		n, err = nb.WriteTo(conn)
	}
	s.mBytes.Add(float64(n))
	// The flusher's non-blocking writes must not trip over an old deadline.
	_ = conn.SetWriteDeadline(time.Time{})
	return n, err
}

// flusher owns the reusable buffers of the stage's flush goroutine.
type flusher struct {
	s       *Stage
	due     []*stream // flushDue's, reused
	viewers []*viewer
	bufs    [][]byte
	iov     iovecs
	ring    *uring.Ring   // nil: a writev per viewer
	batch   []batchedSend // the viewers being sent in one batch
}

// flushStreams sends what the streams sts have queued to their viewers,
// in one batch.
func (f *flusher) flushStreams(sts []*stream, now time.Time) {
	for _, st := range sts {
		st.mu.Lock()
		st.pending = 0
		f.viewers = append(f.viewers[:0], st.viewers...)
		st.mu.Unlock()
		for j, v := range f.viewers {
			f.flush(v, now)
			f.viewers[j] = nil
		}
	}
	f.sendBatch()
}

// flush sends v's queue: in the flusher's batch (batch.go), or else with
// non-blocking writevs; what the socket does not take is handed to v's
// goroutine, which waits for the socket. A viewer too far behind live is
// shed first.
func (f *flusher) flush(v *viewer, now time.Time) {
	failed, ok := f.take(v, now)
	if !ok {
		return
	}
	if failed == nil && f.batchable(v) {
		f.queue(v) // released when the batch is sent
		return
	}
	for failed == nil && len(v.out) > 0 {
		f.bufs = v.frame(f.bufs[:0], maxIov)
		n, err := tryWritev(v.raw, &f.iov, f.bufs)
		clear(f.bufs)
		f.s.mBytes.Add(float64(n))
		if err != nil {
			failed = err
			break
		}
		// drop what went out whole, remember how far into the next
		if v.sent(n) == 0 {
			break // the socket is full
		}
	}
	f.release(v, failed)
}

// take makes the flusher v's writer (ownFlusher) with its queue in out, if
// v is idle and has something queued; failed is v's lag check.
func (f *flusher) take(v *viewer, now time.Time) (failed error, ok bool) {
	v.mu.Lock()
	if v.owner != ownIdle || len(v.q) == 0 || v.dead {
		v.mu.Unlock()
		return nil, false
	}
	if v.raw == nil {
		v.owner = ownViewer
		v.mu.Unlock()
		v.signal()
		return nil, false
	}
	v.owner = ownFlusher
	v.out, v.q = v.q, v.out[:0]
	v.off, v.nout = 0, len(v.out)
	enq := v.enq
	v.mu.Unlock()
	return f.s.checkLag(v, now, enq), true
}

// release hands v back after the flusher's writes, failed by failed if
// not nil: idle, to v's goroutine with what the socket did not take, or
// dead and cut.
func (f *flusher) release(v *viewer, failed error) {
	v.mu.Lock()
	wake := false
	var cutBy *core.DropCounter
	switch {
	case failed != nil || v.dead:
		if !v.dead { // else counted when it was shed
			cutBy = f.s.cutBy(failed)
		}
		v.dead = true
		v.dropOut()
		v.owner, v.nout = ownIdle, 0
		wake = true
	case len(v.out) > 0: // the rest is the goroutine's to send, blocking
		v.owner, v.nout = ownViewer, len(v.out)
		wake = true
	default:
		v.owner, v.nout = ownIdle, 0
		wake = v.ended
	}
	sock := -1
	if v.gone { // viewerLeft left sock to the flusher
		sock = v.takeSock()
	}
	v.mu.Unlock()
	closeSock(sock)
	if cutBy != nil {
		cutBy.Inc()
	}
	if failed != nil {
		abort(v.tcp)
	}
	if wake {
		v.signal()
	}
}

// writeGathered writes bufs through w and flushes it: the bytes w took and
// the first error. On an error the viewer is cut, so what w still holds
// does not matter.
func writeGathered(w *bufio.Writer, bufs [][]byte) (int64, error) {
	var n int64
	for _, b := range bufs {
		m, err := w.Write(b)
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	return n, w.Flush()
}
