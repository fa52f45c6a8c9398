package testrun

import (
	"net/http"
	"testing"
	"time"
)

// Every wait in a test is bounded, so a misbehaving ffmpeg or a stuck stage
// fails the test instead of hanging the package until go test's timeout.
const (
	WaitLimit   = 30 * time.Second // one condition (generous: CI boxes are loaded)
	FFmpegLimit = 90 * time.Second // one ffmpeg run, start to exit
)

// Eventually polls cond every 5 ms until it holds, or fails the test after d
// naming what it waited for: every wait in a test is bounded.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Within receives from ch or fails the test after d.
func Within[T any](t testing.TB, ch <-chan T, d time.Duration, what string) T {
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

// Head is a HEAD request's status, 0 on error: it asks whether a sink serves
// a stream without becoming one of its viewers.
func Head(url string) int {
	c := &http.Client{Timeout: 5 * time.Second}
	r, err := c.Head(url)
	if err != nil {
		return 0
	}
	r.Body.Close()
	return r.StatusCode
}
