package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// health is for container runtimes' health checks (Docker's HEALTHCHECK,
// a Kubernetes exec probe) in images that have no curl: it asks a running
// mediapipe's /healthz and exits 0 only on 200.
func init() {
	Extra["health"] = Command{Summary: "ask a running mediapipe's /healthz (exit 0 when healthy)", Run: healthCmd}
	descriptions["health"] = `Asks URL (default: /healthz on $MEDIAPIPE_ADMIN_LISTEN, else on
127.0.0.1:9090, the [admin] address of pipeline.example.toml) and exits 0
when it answers 200 within --timeout, 1 otherwise. Meant for HEALTHCHECK
in images without curl.`
}

// defaultHealthURL is /healthz on the admin address the environment gives
// (an unspecified host asked on loopback), else on 127.0.0.1:9090.
func defaultHealthURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://127.0.0.1:9090/healthz"
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port) + "/healthz"
}

func healthCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("health", "health [--timeout D] [URL]", stderr)
	timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		return FlagExit(err)
	}
	url := defaultHealthURL(os.Getenv("MEDIAPIPE_ADMIN_LISTEN"))
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
