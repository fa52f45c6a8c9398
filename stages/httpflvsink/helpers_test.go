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

// testCtx ends when the test does, or after d.
func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
