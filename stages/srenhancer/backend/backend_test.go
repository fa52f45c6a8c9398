package backend

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core/sr"
)

func solid(w, h int, r, g, b byte) *sr.Image {
	im := &sr.Image{Width: w, Height: h, Format: "rgb24", Pix: make([]byte, w*h*3)}
	for i := 0; i < len(im.Pix); i += 3 {
		im.Pix[i], im.Pix[i+1], im.Pix[i+2] = r, g, b
	}
	return im
}

func TestBuiltin(t *testing.T) {
	for _, scale := range []int{2, 3, 4} {
		t.Run(strconv.Itoa(scale), func(t *testing.T) {
			out, err := NewBuiltin().Enhance(context.Background(), solid(32, 18, 200, 100, 50), scale)
			if err != nil {
				t.Fatal(err)
			}
			if out.Width != 32*scale || out.Height != 18*scale || out.Validate() != nil || out.Format != "rgb24" {
				t.Fatalf("got %dx%d %s", out.Width, out.Height, out.Format)
			}
			// A flat picture stays flat and keeps its channel order.
			for i := 0; i < len(out.Pix); i += 3 {
				if out.Pix[i] != 200 || out.Pix[i+1] != 100 || out.Pix[i+2] != 50 {
					t.Fatalf("pixel %d = %v", i/3, out.Pix[i:i+3])
				}
			}
		})
	}
	if _, err := NewBuiltin().Enhance(context.Background(), &sr.Image{Width: 2, Height: 2, Pix: []byte{1}}, 2); err == nil {
		t.Fatal("bad image accepted")
	}
}

// fakeKVSR answers like basicKVSR: BGR24 at 4× with a reply size chosen by the test.
func fakeKVSR(t *testing.T, mode string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		width, _ := strconv.Atoi(r.URL.Query().Get("w"))
		height, _ := strconv.Atoi(r.URL.Query().Get("h"))
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || len(body) != width*height*3 || r.URL.Query().Get("token") != "x" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		n := width * 4 * height * 4 * 3
		switch mode {
		case "500":
			http.Error(w, "model crashed", http.StatusInternalServerError)
			return
		case "short":
			n--
		case "long":
			n++
		case "slow":
			time.Sleep(300 * time.Millisecond)
		}
		out := make([]byte, n)
		for i := 0; i+2 < n; i += 3 { // echo the first input pixel, in BGR order
			out[i], out[i+1], out[i+2] = body[2], body[1], body[0]
		}
		w.Write(out)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestHTTP(t *testing.T) {
	for _, c := range []struct {
		mode string
		want error // nil: success; errAny: some error
	}{
		{"ok", nil},
		{"500", errAny},
		{"short", ErrWrongSize},
		{"long", ErrWrongSize},
		{"slow", context.DeadlineExceeded},
	} {
		t.Run(c.mode, func(t *testing.T) {
			srv := fakeKVSR(t, c.mode)
			b, err := NewHTTP(srv.URL + "/sr?token=x")
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
			defer cancel()
			out, err := b.Enhance(ctx, solid(8, 6, 10, 20, 30), 4)
			switch {
			case c.want == nil && err != nil:
				t.Fatal(err)
			case c.want == nil:
				if out.Width != 32 || out.Height != 24 || out.Format != "bgr24" || !bytes.Equal(out.Pix[:3], []byte{30, 20, 10}) {
					t.Fatalf("got %dx%d %s %v", out.Width, out.Height, out.Format, out.Pix[:3])
				}
			case err == nil:
				t.Fatal("no error")
			case c.want != errAny && !errors.Is(err, c.want):
				t.Fatalf("err %v, want %v", err, c.want)
			}
		})
	}
}

var errAny = errors.New("any")

func TestHTTPUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	b, err := NewHTTP(url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Enhance(context.Background(), solid(4, 4, 0, 0, 0), 4); err == nil {
		t.Fatal("no error from a closed port")
	}
}

func TestNewHTTPBadURL(t *testing.T) {
	for _, u := range []string{"", "localhost:8000", "ftp://x/y", "http://"} {
		if _, err := NewHTTP(u); err == nil {
			t.Errorf("NewHTTP(%q): no error", u)
		}
	}
}

func BenchmarkBuiltin320x180x4(b *testing.B) {
	in := solid(320, 180, 1, 2, 3)
	be := NewBuiltin()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := be.Enhance(context.Background(), in, 4); err != nil {
			b.Fatal(err)
		}
	}
}

// TestHTTPQuery: the request line carries exactly ?w=W&h=H, w first, then
// the URL's own query unchanged (any w or h in it replaced).
func TestHTTPQuery(t *testing.T) {
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.URL.RawQuery
		w.Write(make([]byte, 8*4*6*4*3))
	}))
	defer srv.Close()
	for _, c := range []struct{ query, want string }{
		{"", "w=8&h=6"},
		{"?", "w=8&h=6"},
		{"?token=a%2Fb&z=1", "w=8&h=6&token=a%2Fb&z=1"},
		{"?h=1&token=x&w=2", "w=8&h=6&token=x"},
	} {
		b, err := NewHTTP(srv.URL + "/sr" + c.query)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Enhance(context.Background(), solid(8, 6, 1, 2, 3), 4); err != nil {
			t.Fatalf("%q: %v", c.query, err)
		}
		if q := <-got; q != c.want {
			t.Errorf("URL %q: query %q, want %q", c.query, q, c.want)
		}
	}
}
