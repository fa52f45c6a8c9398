package playerpage_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/internal/browser"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/stages/internal/playerpage"
	"github.com/mediapipe/mediapipe/stages/internal/streaminfo"
)

// TestHLSPageInBrowser: the HLS page plays a live HLS stream (ffmpeg's
// own, standing in for hls-sink) with hls.js under the page's CSP, and shows
// hls.js's latency.
func TestHLSPageInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("plays a stream in chromium")
	}
	clip := testmedia.Clip(t, testmedia.Options{Seconds: 30, Width: 640, Height: 360})
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-i", clip,
		"-c", "copy", "-f", "hls", "-hls_time", "1", "-hls_list_size", "6", "-hls_flags", "delete_segments",
		filepath.Join(dir, "index.m3u8"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })

	live := func() bool { _, err := os.Stat(filepath.Join(dir, "index.m3u8")); return err == nil }
	pages := playerpage.New(playerpage.Options{Protocol: playerpage.HLS, Streams: func() []streaminfo.Info {
		if !live() {
			return nil
		}
		return []streaminfo.Info{{Name: "live/hls"}}
	}})
	files := http.StripPrefix("/live/hls/", http.FileServer(http.Dir(dir)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/live/hls/") {
			w.Header().Set("Cache-Control", "no-store")
			files.ServeHTTP(w, r)
			return
		}
		pages.ServeHTTP(w, r)
	}))
	defer srv.Close()

	p := browser.Start(t)
	p.Navigate(srv.URL + "/live/hls")
	const state = `{mp: window.mediapipe, message: document.getElementById('message').textContent, t: document.querySelector('video').currentTime}`
	p.WaitUntil(30*time.Second, "the HLS page to play", `window.mediapipe.state === 'playing'`, state)
	if engine := browser.MustEval[string](p, `window.mediapipe.engine`); engine != "hls.js" {
		t.Errorf("played with %q, want hls.js", engine)
	}
	start := browser.MustEval[float64](p, `document.querySelector('video').currentTime`)
	p.WaitUntil(10*time.Second, "the video to advance and decode frames",
		`document.querySelector('video').currentTime > `+strconv.FormatFloat(start+1, 'f', 3, 64)+` && document.querySelector('video').getVideoPlaybackQuality().totalVideoFrames > 20`, state)
	p.WaitUntil(5*time.Second, "hls.js's latency on the page", `typeof window.mediapipe.hlsLatency === 'number' && document.getElementById('latency').textContent.includes('hls.js')`, state)
	if size := browser.MustEval[[]int](p, `[document.querySelector('video').videoWidth, document.querySelector('video').videoHeight]`); size[0] != 640 || size[1] != 360 {
		t.Errorf("video is %v, want 640x360", size)
	}
	if e := browser.MustEval[any](p, `window.mediapipe.error`); e != nil {
		t.Errorf("player error: %v", e)
	}
	t.Logf("HLS page (ffmpeg's 1 s segments, not LL-HLS): hls.js latency %.2f s", browser.MustEval[float64](p, `window.mediapipe.hlsLatency`))
}

// TestNamesAreTextInBrowser: a hostile stream name shows as text in the list
// and on its page, and runs nothing.
func TestNamesAreTextInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("runs chromium")
	}
	evil := `live/<img src=x onerror="window.pwned=1">'"&`
	pages := playerpage.New(playerpage.Options{Protocol: playerpage.FLV, Streams: func() []streaminfo.Info {
		return []streaminfo.Info{{Name: evil, Video: `<b>H264</b>`, Width: 640, Height: 360}}
	}})
	srv := httptest.NewServer(pages)
	defer srv.Close()
	p := browser.Start(t)
	p.Navigate(srv.URL + "/")
	p.WaitUntil(10*time.Second, "the list", `document.querySelector('#streams tbody a') !== null`, `document.body.innerText`)
	if got := browser.MustEval[string](p, `document.querySelector('#streams tbody a').textContent`); got != evil {
		t.Errorf("link text %q, want %q", got, evil)
	}
	if n := browser.MustEval[int](p, `document.querySelectorAll('#streams img, #streams b').length`); n != 0 {
		t.Errorf("%d elements made from the stream's fields", n)
	}
	p.Click(`#streams tbody a`)
	p.WaitUntil(10*time.Second, "the stream's page", `document.getElementById('title') !== null`, `location.href`)
	if got := browser.MustEval[string](p, `document.getElementById('title').textContent + '|' + document.body.dataset.name`); got != evil+"|"+evil {
		t.Errorf("page shows %q, want the name as text", got)
	}
	if pwned := browser.MustEval[bool](p, `window.pwned === 1`); pwned {
		t.Errorf("the name ran as HTML")
	}
}
