package browser

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPage: the browser opens a local page, runs its script, and its
// console reaches the test.
func TestPage(t *testing.T) {
	if testing.Short() {
		t.Skip("runs chromium")
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte(`<!doctype html><title>t</title><button id=b>go</button><p id=out></p><script src="/s.js"></script>`))
		case "/s.js":
			w.Header().Set("Content-Type", "text/javascript")
			_, _ = w.Write([]byte(`document.getElementById('b').onclick = () => { document.getElementById('out').textContent = 'clicked'; console.log('hello from the page'); };`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	p := Start(t)
	p.Navigate(srv.URL + "/")
	p.Click("#b")
	p.WaitUntil(5*time.Second, "the click handled", `document.getElementById('out').textContent === 'clicked'`, "")
	if got := MustEval[string](p, `document.title`); got != "t" {
		t.Fatalf("title %q", got)
	}
	p.WaitUntil(5*time.Second, "the console line", `true`, "")
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(strings.Join(p.Console(), "\n"), "hello from the page") {
		if time.Now().After(deadline) {
			t.Fatalf("console: %q", p.Console())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestScreenshot: the failure screenshot is a PNG in the test's output.
func TestScreenshot(t *testing.T) {
	if testing.Short() {
		t.Skip("runs chromium")
	}
	p := Start(t)
	p.Navigate("about:blank")
	p.saveScreenshot()
	b, err := os.ReadFile(filepath.Join(artifactDir(t), "screenshot.png"))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 8 || string(b[1:4]) != "PNG" {
		t.Fatalf("screenshot is not a PNG (%d bytes)", len(b))
	}
}
