package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mediapipe/mediapipe/core/sr"
)

// ErrWrongSize is returned when a service's reply is not scale×W by scale×H.
var ErrWrongSize = errors.New("reply has the wrong size")

// HTTP speaks the basicKVSR protocol: POST URL?w=W&h=H with the raw RGB24
// picture as body; the reply is the raw BGR24 picture at scale×W by scale×H.
type HTTP struct {
	url    *url.URL
	query  string // the URL's own query without w and h, appended after them
	client *http.Client
}

// NewHTTP returns a client of the service at rawURL. Deadlines come from
// each call's context.
func NewHTTP(rawURL string) (*HTTP, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("url %q: want http://HOST[:PORT]/PATH", rawURL)
	}
	// The URL's own query (a token, say) is kept byte for byte, except any
	// w or h it has: those are the picture's.
	var keep []string
	for _, part := range strings.Split(u.RawQuery, "&") {
		key, _, _ := strings.Cut(part, "=")
		if k, err := url.QueryUnescape(key); part == "" || (err == nil && (k == "w" || k == "h")) {
			continue
		}
		keep = append(keep, part)
	}
	q := strings.Join(keep, "&")
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 8
	tr.ResponseHeaderTimeout = 0 // the call's context bounds it
	return &HTTP{url: u, query: q, client: &http.Client{Transport: tr, Timeout: 5 * time.Minute}}, nil
}

// Enhance implements sr.Backend.
func (h *HTTP) Enhance(ctx context.Context, in *sr.Image, scale int) (*sr.Image, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	body := in.Pix
	if in.Format == "bgr24" {
		body = swapRB(in.Pix)
	}
	// Exactly "w=W&h=H", w first, as basicKVSR's contract reads
	// (url.Values.Encode would sort h before w); then the URL's own query.
	u := *h.url
	u.RawQuery = "w=" + strconv.Itoa(in.Width) + "&h=" + strconv.Itoa(in.Height)
	if h.query != "" {
		u.RawQuery += "&" + h.query
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return nil, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	want := in.Width * scale * in.Height * scale * 3
	if resp.ContentLength >= 0 && resp.ContentLength != int64(want) {
		return nil, fmt.Errorf("%w: %d bytes, want %d (%dx%d BGR24)", ErrWrongSize, resp.ContentLength, want, in.Width*scale, in.Height*scale)
	}
	pix := make([]byte, want)
	n, err := io.ReadFull(resp.Body, pix)
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		return nil, fmt.Errorf("%w: %d bytes, want %d (%dx%d BGR24)", ErrWrongSize, n, want, in.Width*scale, in.Height*scale)
	}
	if err != nil {
		return nil, err
	}
	var extra [1]byte
	if m, _ := resp.Body.Read(extra[:]); m > 0 {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrWrongSize, want)
	}
	return &sr.Image{Width: in.Width * scale, Height: in.Height * scale, Format: "bgr24", Pix: pix}, nil
}

// Close implements sr.Backend.
func (h *HTTP) Close() error {
	h.client.CloseIdleConnections()
	return nil
}

func swapRB(p []byte) []byte {
	out := make([]byte, len(p))
	for i := 0; i+2 < len(p); i += 3 {
		out[i], out[i+1], out[i+2] = p[i+2], p[i+1], p[i]
	}
	return out
}
