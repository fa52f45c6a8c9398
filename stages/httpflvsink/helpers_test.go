package httpflvsink_test

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// Every wait in these tests is bounded, so a misbehaving ffmpeg or a stuck
// stage fails the test instead of hanging the package until go test's timeout.
const (
	waitLimit   = 30 * time.Second // one condition (generous: CI boxes are loaded)
	ffmpegLimit = 90 * time.Second // one ffmpeg run, start to exit
)

// httpc is every request's client: a response, body included, ends in time.
var httpc = &http.Client{Timeout: ffmpegLimit}

// head is a HEAD request's status, 0 on error.
func head(url string) int {
	c := &http.Client{Timeout: 5 * time.Second}
	r, err := c.Head(url)
	if err != nil {
		return 0
	}
	r.Body.Close()
	return r.StatusCode
}

// within receives from ch or fails the test after d.
func within[T any](t testing.TB, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("timed out after %v waiting for %s", d, what)
		panic("unreachable")
	}
}

// testCtx ends when the test does, or after d.
func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
