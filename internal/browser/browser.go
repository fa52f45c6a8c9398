// Package browser drives Debian's headless Chromium from tests, through
// chromedp: a page is opened, scripts are evaluated and waited on, and a
// screenshot is kept in the test's output when the test fails.
package browser

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// Bounds of every browser step: a test that hangs in the browser fails.
const (
	StartLimit  = 30 * time.Second // launch and first blank page
	ActionLimit = 15 * time.Second // one navigation, click or evaluation
)

// Path is where Debian's chromium package puts the browser.
var Path = "/usr/bin/chromium"

// Page is one headless Chromium with one tab, for one test.
type Page struct {
	t   testing.TB
	ctx context.Context // the tab's, alive until cleanup

	mu      sync.Mutex
	console []string // the page's console and exceptions, for failures
}

// Find returns the browser's path, or "" when it is not installed.
func Find() string {
	if _, err := os.Stat(Path); err == nil {
		return Path
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	return ""
}

// Start launches Chromium headless for t and opens a blank tab. Without
// Chromium the test fails (make deps installs it), or under -short is
// skipped. On cleanup a failed test's page is saved as a screenshot, the
// console is logged, and the browser is stopped, killed by its PID if it
// lingers.
func Start(t testing.TB) *Page {
	t.Helper()
	exe := Find()
	if exe == "" {
		msg := "chromium not found (" + Path + "): run `make deps` or apt-get install chromium"
		if testing.Short() {
			t.Skip(msg)
		}
		t.Fatal(msg)
	}
	// one browser at a time over all test binaries: it decodes video on
	// the test machine's few cores, beside other packages' timing tests
	testrun.Exclusive(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // tests run as root in containers
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("mute-audio", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	p := &Page{t: t}
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(func(string, ...any) {}))
	p.ctx = ctx

	var pid int
	t.Cleanup(func() {
		if t.Failed() {
			p.saveScreenshot()
			p.logConsole()
		}
		// Closing the tab's context closes the browser; wait for it a
		// little, then make sure by its PID.
		done := make(chan struct{})
		go func() {
			cancelTab()
			cancelAlloc()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			if pid > 0 {
				t.Logf("browser: chromium (pid %d) did not close: killing it", pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})

	// The first Run starts the browser: its context must not time out (a
	// timeout there would stop the browser), so the start is bounded apart.
	started := make(chan error, 1)
	go func() {
		if err := chromedp.Listen(ctx, p.listen); err != nil {
			started <- err
			return
		}
		_, err := chromedp.Run(ctx, chromedp.Navigate("about:blank"))
		started <- err
	}()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("browser: start %s: %v", exe, err)
		}
	case <-time.After(StartLimit):
		t.Fatalf("browser: %s did not start within %v", exe, StartLimit)
	}
	if c := chromedp.FromContext(ctx); c != nil && c.Browser != nil && c.Browser.Process() != nil {
		pid = c.Browser.Process().Pid
	}
	return p
}

// listen keeps the page's console lines and uncaught exceptions.
func (p *Page) listen(ev any) {
	var line string
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		var parts []string
		for _, a := range ev.Args {
			if len(a.Value) > 0 {
				parts = append(parts, string(a.Value))
			} else {
				parts = append(parts, a.Description)
			}
		}
		line = string(ev.Type) + ": " + strings.Join(parts, " ")
	case *runtime.EventExceptionThrown:
		line = "exception: " + ev.ExceptionDetails.Text
		if ev.ExceptionDetails.Exception != nil {
			line += " " + ev.ExceptionDetails.Exception.Description
		}
	default:
		return
	}
	p.mu.Lock()
	if len(p.console) < 500 { // bounded: a chatty page cannot grow it
		p.console = append(p.console, line)
	}
	p.mu.Unlock()
}

// Console returns the page's console lines so far.
func (p *Page) Console() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.console...)
}

func (p *Page) logConsole() {
	for _, l := range p.Console() {
		p.t.Log("browser console: " + l)
	}
}

// Do runs actions against the tab, bounded by ActionLimit.
func (p *Page) Do(actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(p.ctx, ActionLimit)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

// Navigate opens url in the tab and waits for its load event.
func (p *Page) Navigate(url string) {
	p.t.Helper()
	if err := p.Do(chromedp.Navigate(url)); err != nil {
		p.t.Fatalf("browser: open %s: %v", url, err)
	}
}

// Eval evaluates a JavaScript expression and decodes its value into T; a
// promise is awaited.
func Eval[T any](p *Page, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(p.ctx, ActionLimit)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// MustEval is Eval that fails the test on an error.
func MustEval[T any](p *Page, expr string) T {
	p.t.Helper()
	v, err := Eval[T](p, expr)
	if err != nil {
		p.t.Fatalf("browser: evaluate %s: %v", expr, err)
	}
	return v
}

// WaitUntil evaluates cond (a JavaScript expression) every 50 ms until it is
// true, or fails the test after d naming what it waited for and showing
// show (another expression, evaluated then, "" for none).
func (p *Page) WaitUntil(d time.Duration, what, cond, show string) {
	p.t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, err := Eval[bool](p, "Boolean("+cond+")")
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			state := ""
			if show != "" {
				if v, err := Eval[[]byte](p, "JSON.stringify("+show+")"); err == nil {
					state = "; " + string(v)
				}
			}
			if err != nil {
				state += fmt.Sprintf("; last error: %v", err)
			}
			p.t.Fatalf("browser: timed out after %v waiting for %s%s", d, what, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Click clicks the first element matching the CSS selector sel.
func (p *Page) Click(sel string) {
	p.t.Helper()
	if err := p.Do(chromedp.Click(chromedp.CSS(sel))); err != nil {
		p.t.Fatalf("browser: click %s: %v", sel, err)
	}
}

// artifactDir is where a test keeps its output files.
func artifactDir(t testing.TB) string {
	if a, ok := t.(interface{ ArtifactDir() string }); ok {
		return a.ArtifactDir()
	}
	return t.TempDir()
}

// saveScreenshot keeps what the tab shows as a PNG in the test's output.
func (p *Page) saveScreenshot() {
	ctx, cancel := context.WithTimeout(p.ctx, ActionLimit)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			p.t.Logf("browser: screenshot: %v", err)
		}
		return
	}
	path := filepath.Join(artifactDir(p.t), "screenshot.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Logf("browser: screenshot: %v", err)
		return
	}
	p.t.Logf("browser: screenshot of the page at failure: %s (kept with go test -artifacts)", path)
}
