package httpflvsink_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/internal/testrun"
)

// httpc is every request's client: a response, body included, ends in time.
var httpc = &http.Client{Timeout: testrun.FFmpegLimit}

// testCtx ends when the test does, or after d.
func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
