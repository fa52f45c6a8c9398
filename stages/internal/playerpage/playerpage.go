// Package playerpage is the page every viewer port serves: "/" lists the
// live streams, "/APP/KEY" plays one in the browser with the player scripts
// embedded in the binary, so a page works on a machine with no internet.
//
// A sink routes the requests it does not serve itself (its media URLs) to a
// Handler.
package playerpage

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mediapipe/mediapipe/stages/internal/streaminfo"
	"github.com/mediapipe/mediapipe/stages/internal/viewerhttp"
)

// Protocol is what a sink serves, and so which player a page uses.
type Protocol string

const (
	// FLV pages play APP/KEY.flv with mpegts.js.
	FLV Protocol = "flv"
	// HLS pages play APP/KEY/index.m3u8 with hls.js, or natively where the
	// browser plays HLS itself.
	HLS Protocol = "hls"
)

// Prefix is the path under which the pages' own resources live (scripts,
// the stream list as JSON); a stream whose APP is ".mediapipe" has no page.
const Prefix = "/.mediapipe/"

// Options are a Handler's sources of truth; the funcs are called per request.
type Options struct {
	Protocol Protocol
	// Streams lists the live streams now, viewers filled in.
	Streams func() []streaminfo.Info
	// PlayKey is the key viewers must give (?key=), "" when none: the pages
	// of a protected sink ask for it as its media does.
	PlayKey func() string
	Log     *slog.Logger
}

// Handler serves the pages and their scripts.
type Handler struct {
	opts Options
}

// New returns the page handler of one sink.
func New(opts Options) *Handler {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Streams == nil {
		opts.Streams = func() []streaminfo.Info { return nil }
	}
	if opts.PlayKey == nil {
		opts.PlayKey = func() string { return "" }
	}
	return &Handler{opts: opts}
}

// csp lets the pages run only their own scripts; the players need blob:
// for the MediaSource they attach (media-src) and hls.js for its
// transmuxing worker (worker-src).
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; media-src 'self' blob:; worker-src 'self' blob:; " +
	"form-action 'self'; base-uri 'none'"

//go:embed assets/*.js assets/*.LICENSE assets/*.txt assets/VERSIONS web/*.js web/*.css
var files embed.FS

//go:embed web/*.html
var pages embed.FS

var tmpl = template.Must(template.ParseFS(pages, "web/*.html"))

// asset is one embedded file with its validator.
type asset struct {
	body  []byte
	ctype string
	etag  string
	// gz is body gzipped, made at the first request that accepts it: the
	// players shrink to about a third, which a phone's first frame feels.
	gzOnce *sync.Once
	gz     *[]byte
}

// gzipped returns the asset compressed.
func (a asset) gzipped() []byte {
	a.gzOnce.Do(func() {
		var b bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&b, gzip.DefaultCompression) // a valid level: no error
		_, _ = zw.Write(a.body)
		_ = zw.Close()
		*a.gz = b.Bytes()
	})
	return *a.gz
}

// assets maps a name under Prefix to its file: the vendored players and
// licences by their own names, the pages' scripts and style.
var assets = func() map[string]asset {
	m := map[string]asset{}
	for _, dir := range []string{"assets", "web"} {
		ents, err := fs.ReadDir(files, dir)
		if err != nil {
			panic(err) // embedded: cannot fail once built
		}
		for _, e := range ents {
			b, err := fs.ReadFile(files, dir+"/"+e.Name())
			if err != nil {
				panic(err)
			}
			sum := sha256.Sum256(b)
			ctype := "text/plain; charset=utf-8"
			switch path.Ext(e.Name()) {
			case ".js":
				ctype = "text/javascript; charset=utf-8"
			case ".css":
				ctype = "text/css; charset=utf-8"
			}
			m[e.Name()] = asset{body: b, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, gzOnce: new(sync.Once), gz: new([]byte)}
		}
	}
	return m
}()

// ServeHTTP serves "/", "/APP/KEY" and the pages' own resources; anything
// else is 404.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	hd := w.Header()
	hd.Set("X-Content-Type-Options", "nosniff")
	// The key travels in page URLs: keep it out of Referer headers.
	hd.Set("Referrer-Policy", "no-referrer")
	p := r.URL.Path
	switch {
	case p == "/":
		h.page(w, r, "index.html", "")
	case p == Prefix+"streams.json":
		h.streams(w, r)
	case strings.HasPrefix(p, Prefix):
		h.asset(w, r, strings.TrimPrefix(p, Prefix))
	default:
		name, ok := pageName(p)
		if !ok {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		h.page(w, r, "player.html", name)
	}
}

// pageName maps "/live/movie" to "live/movie": two or more segments, none
// empty or dotted.
func pageName(p string) (string, bool) {
	name := strings.TrimPrefix(p, "/")
	if !strings.Contains(name, "/") || len(name) > 1024 {
		return "", false
	}
	for seg := range strings.SplitSeq(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", false
		}
	}
	return name, true
}

// keyStatus is 200 when the request may see the streams, else 401 (no key
// given) or 403 (wrong key).
func (h *Handler) keyStatus(r *http.Request) int {
	return viewerhttp.KeyStatus(r, h.opts.PlayKey())
}

// pageData is what the page templates see. The scripts read the rest
// (the stream list, whether it is live) from streams.json.
type pageData struct {
	Name     string
	Protocol Protocol
	Status   int // 401/403: the page opens with its key form
}

func (h *Handler) page(w http.ResponseWriter, r *http.Request, file, name string) {
	status := h.keyStatus(r)
	var buf bytes.Buffer
	if err := tmpl.ExecuteTemplate(&buf, file, pageData{Name: name, Protocol: h.opts.Protocol, Status: status}); err != nil {
		h.opts.Log.Error("playerpage: render", "page", file, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Content-Security-Policy", csp)
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// streamList is streams.json.
type streamList struct {
	Protocol Protocol          `json:"protocol"`
	Streams  []streaminfo.Info `json:"streams"`
}

func (h *Handler) streams(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	switch h.keyStatus(r) {
	case http.StatusUnauthorized:
		http.Error(w, "play key required", http.StatusUnauthorized)
		return
	case http.StatusForbidden:
		http.Error(w, "wrong play key", http.StatusForbidden)
		return
	}
	list := streamList{Protocol: h.opts.Protocol, Streams: h.opts.Streams()}
	if list.Streams == nil {
		list.Streams = []streaminfo.Info{}
	}
	slices.SortFunc(list.Streams, func(a, b streaminfo.Info) int { return strings.Compare(a.Name, b.Name) })
	b, err := json.Marshal(list)
	if err != nil {
		h.opts.Log.Error("playerpage: streams.json", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	hd.Set("Content-Type", "application/json")
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}

// acceptsGzip reports whether the request's Accept-Encoding lists gzip
// (and does not refuse it with q=0).
func acceptsGzip(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept-Encoding") {
		for part := range strings.SplitSeq(v, ",") {
			enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if strings.EqualFold(strings.TrimSpace(enc), "gzip") {
				q := strings.ReplaceAll(params, " ", "")
				return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
			}
		}
	}
	return false
}

func (h *Handler) asset(w http.ResponseWriter, r *http.Request, name string) {
	a, ok := assets[name]
	if !ok {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", a.ctype)
	// Revalidated on each load (a new binary may carry new players), a 304
	// when unchanged.
	hd.Set("Cache-Control", "no-cache")
	hd.Set("Vary", "Accept-Encoding")
	body, etag := a.body, a.etag
	if len(body) > 1024 && acceptsGzip(r) {
		body, etag = a.gzipped(), a.etag[:len(a.etag)-1]+`-gz"`
		hd.Set("Content-Encoding", "gzip")
	}
	hd.Set("ETag", etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}
