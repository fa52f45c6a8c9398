package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// health is for container runtimes' health checks (Docker's HEALTHCHECK,
// a Kubernetes exec probe) in images that have no curl: it asks a running
// mediapipe's /healthz and exits 0 only on 200.
func init() {
	Extra["health"] = Command{Summary: "ask a running mediapipe's /healthz (exit 0 when healthy)", Run: healthCmd}
	descriptions["health"] = `Asks URL (default http://127.0.0.1:9090/healthz, the [admin] address of
pipeline.example.toml) and exits 0 when it answers 200 within --timeout,
1 otherwise. Meant for HEALTHCHECK in images without curl.`
}

func healthCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("health", "health [--timeout D] [URL]", stderr)
	timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		return FlagExit(err)
	}
	url := "http://127.0.0.1:9090/healthz"
	switch fs.NArg() {
	case 0:
	case 1:
		url = fs.Arg(0)
	default:
		fs.Usage()
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintf(stderr, "mediapipe health: %v\n", err)
		return 2
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "mediapipe health: %s: %v\n", url, err)
		return 1
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "mediapipe health: %s: %s\n", url, resp.Status)
		return 1
	}
	fmt.Fprintln(stdout, "ok")
	return 0
}
