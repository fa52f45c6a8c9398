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
	"time"

	"github.com/mediapipe/mediapipe/core/sr"
)

// ErrWrongSize is returned when a service's reply is not scale×W by scale×H.
var ErrWrongSize = errors.New("reply has the wrong size")

// HTTP speaks the basicKVSR protocol: POST URL?w=W&h=H with the raw RGB24
// picture as body; the reply is the raw BGR24 picture at scale×W by scale×H.
type HTTP struct {
	url    *url.URL
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
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 8
	tr.ResponseHeaderTimeout = 0 // the call's context bounds it
	return &HTTP{url: u, client: &http.Client{Transport: tr, Timeout: 5 * time.Minute}}, nil
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
	u := *h.url
	q := u.Query()
	q.Set("w", strconv.Itoa(in.Width))
	q.Set("h", strconv.Itoa(in.Height))
	u.RawQuery = q.Encode()
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
