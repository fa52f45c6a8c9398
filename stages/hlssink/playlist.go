package hlssink

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// servePlaylist answers a playlist request. gohlslib holds a playlist
// request until the stream has content (or, for a blocking reload, the part
// asked for) and knows nothing of the client going away or of the stream
// ending, so its answer is taken on a goroutine of its own while this one
// also watches the client, the stream and a deadline. Once the stream has
// ended its final playlists (with #EXT-X-ENDLIST) are served instead.
func (s *Stage) servePlaylist(w http.ResponseWriter, r *http.Request, e *entry, file string) {
	deadline := time.NewTimer(playlistWait)
	defer deadline.Stop()
	for {
		m, changed, ended, final := e.state()
		if ended {
			pl, ok := final[file]
			if !ok {
				http.Error(w, "stream ended", http.StatusNotFound)
				return
			}
			writePlaylist(w, withQuery(pl, r.URL.RawQuery), "no-cache")
			return
		}
		if m == nil { // tracks not known yet
			select {
			case <-changed:
				continue
			case <-deadline.C:
				http.Error(w, "stream not ready", http.StatusServiceUnavailable)
			case <-r.Context().Done():
			case <-s.done:
				http.Error(w, "shutting down", http.StatusServiceUnavailable)
			}
			return
		}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		// A held request's goroutine outlives the request when the client
		// leaves or the deadline passes (until its part comes or the muxer
		// closes), so these goroutines, not requests, are what is bounded.
		if s.waiting.Add(1) > maxWaiting {
			s.waiting.Add(-1)
			s.mu.Unlock()
			s.mRejected.Inc()
			http.Error(w, "too many requests waiting", http.StatusServiceUnavailable)
			return
		}
		s.hwg.Add(1) // under mu: Run waits for these only after closing
		s.mu.Unlock()
		res := make(chan *bufWriter, 1)
		rc := r.Clone(context.Background())
		go func() {
			defer s.hwg.Done()
			defer s.waiting.Add(-1)
			bw := newBufWriter()
			m.mux.Handle(bw, rc)
			res <- bw
		}()
		select {
		case bw := <-res:
			if bw.status() == http.StatusOK && len(bw.buf.Bytes()) > 0 {
				h := w.Header()
				for k, v := range bw.h {
					h[k] = v
				}
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write(bw.buf.Bytes())
				return
			}
			if bw.status() == http.StatusOK { // gohlslib knows no such file
				http.Error(w, "no such playlist", http.StatusNotFound)
				return
			}
			// 500: the muxer closed under the request (restart or end):
			// look again. Anything else (400: a part too far ahead) is final.
			if bw.status() != http.StatusInternalServerError {
				w.WriteHeader(bw.status())
				return
			}
			select {
			case <-changed:
				continue
			default:
				http.Error(w, "playlist unavailable", http.StatusInternalServerError)
				return
			}
		case <-changed:
			continue // the goroutine ends when its muxer closes
		case <-deadline.C:
			http.Error(w, "playlist not ready in time", http.StatusServiceUnavailable)
		case <-r.Context().Done():
		case <-s.done:
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
		}
		return
	}
}

func writePlaylist(w http.ResponseWriter, body []byte, cacheControl string) {
	h := w.Header()
	h.Set("Content-Type", "application/vnd.apple.mpegurl")
	h.Set("Cache-Control", cacheControl)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// bufWriter keeps a response gohlslib writes, to be sent or dropped.
type bufWriter struct {
	h    http.Header
	code int
	buf  bytes.Buffer
}

func newBufWriter() *bufWriter { return &bufWriter{h: http.Header{}} }

func (b *bufWriter) Header() http.Header { return b.h }

func (b *bufWriter) WriteHeader(code int) {
	if b.code == 0 {
		b.code = code
	}
}

func (b *bufWriter) Write(p []byte) (int, error) {
	if b.code == 0 {
		b.code = http.StatusOK
	}
	return b.buf.Write(p)
}

func (b *bufWriter) status() int {
	if b.code == 0 {
		return http.StatusOK
	}
	return b.code
}

// endPlaylist turns a live media playlist into the final one: no preload
// hint (nothing more will come) and #EXT-X-ENDLIST.
func endPlaylist(pl []byte) []byte {
	var out bytes.Buffer
	for _, line := range strings.SplitAfter(string(pl), "\n") {
		if strings.HasPrefix(line, "#EXT-X-PRELOAD-HINT") || strings.HasPrefix(line, "#EXT-X-ENDLIST") {
			continue
		}
		out.WriteString(line)
	}
	if out.Len() > 0 && !bytes.HasSuffix(out.Bytes(), []byte("\n")) {
		out.WriteByte('\n')
	}
	out.WriteString("#EXT-X-ENDLIST\n")
	return out.Bytes()
}

// withQuery adds a request's query (play key and the like, without the
// _HLS_ directives) to every URI of a stored playlist, as gohlslib does to
// the live ones, so a player's next requests carry it too.
func withQuery(pl []byte, rawQuery string) []byte {
	q := hlsFree(rawQuery)
	if q == "" {
		return pl
	}
	var out bytes.Buffer
	for _, line := range strings.SplitAfter(string(pl), "\n") {
		body := strings.TrimRight(line, "\r\n")
		nl := line[len(body):]
		switch {
		case body == "":
		case !strings.HasPrefix(body, "#"):
			body += "?" + q
		default:
			if i := strings.Index(body, `URI="`); i >= 0 {
				if j := strings.IndexByte(body[i+5:], '"'); j >= 0 {
					at := i + 5 + j
					body = body[:at] + "?" + q + body[at:]
				}
			}
		}
		out.WriteString(body)
		out.WriteString(nl)
	}
	return out.Bytes()
}

// hlsFree is rawQuery without the _HLS_ playlist directives.
func hlsFree(rawQuery string) string {
	if rawQuery == "" {
		return ""
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return ""
	}
	for k := range q {
		if strings.HasPrefix(k, "_HLS_") {
			delete(q, k)
		}
	}
	return q.Encode()
}
