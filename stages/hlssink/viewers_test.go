package hlssink_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// TestViewersCPU measures the CPU an hls-sink process spends per LL-HLS
// viewer: MEDIAPIPE_HLS_VIEWERS=1000 go test -run TestViewersCPU -v
// ./stages/hlssink/ (skipped without it). A mediapipe process (rtmp-source,
// flv-tagger, hls-sink on 127.0.0.1:21010/21011) gets a 30 fps 640x360
// stream from ffmpeg; after a baseline with no viewer, N viewers in this
// process each do what hls.js does live: a blocking playlist reload for the
// next part, then that part, over its own keep-alive connection.
func TestViewersCPU(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("MEDIAPIPE_HLS_VIEWERS"))
	if n <= 0 {
		t.Skip("set MEDIAPIPE_HLS_VIEWERS=N to measure")
	}
	clip := testmedia.Clip(t, testmedia.Options{Seconds: 60, Width: 640, Height: 360})
	rtmp, web := "127.0.0.1:21010", "127.0.0.1:21011"
	p := testrun.StartProcess(t, "hls.toml", publishToHLS(rtmp, web), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	testmedia.Push(t, ctx, clip, "rtmp://"+rtmp+"/live/movie", true)
	base := "http://" + web + "/live/movie/"
	testrun.Eventually(t, testrun.WaitLimit, "the playlist", func() bool {
		resp, err := http.Get(base + "video1_stream.m3u8")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	const window = 10 * time.Second
	idle := cpuOver(t, p.PID, window)

	var reqs, errs, bytes atomic.Int64
	vctx, vcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			llViewer(vctx, base, &reqs, &errs, &bytes)
		}()
	}
	time.Sleep(5 * time.Second) // all viewers polling
	r0, e0, b0 := reqs.Load(), errs.Load(), bytes.Load()
	busy := cpuOver(t, p.PID, window)
	r1, e1, b1 := reqs.Load(), errs.Load(), bytes.Load()
	vcancel()
	wg.Wait()
	per := (busy - idle) / float64(n)
	t.Logf("hls-sink process CPU: %.1f%% idle (muxing one stream), %.1f%% with %d LL-HLS viewers: %.3f%% of a core per viewer; %.0f requests/s, %.1f Mbit/s, %d errors",
		idle, busy, n, per, float64(r1-r0)/window.Seconds(), float64(b1-b0)*8/window.Seconds()/1e6, e1-e0)
}

// cpuOver is the CPU (percent of one core) process pid used over d.
func cpuOver(t *testing.T, pid int, d time.Duration) float64 {
	t.Helper()
	a := cpuTicks(t, pid)
	time.Sleep(d)
	b := cpuTicks(t, pid)
	return float64(b-a) / 100 / d.Seconds() * 100 // USER_HZ = 100
}

func cpuTicks(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64) // utime, field 14
	s, _ := strconv.ParseInt(f[12], 10, 64) // stime, field 15
	return u + s
}

// llViewer polls like hls.js live on LL-HLS until ctx ends.
func llViewer(ctx context.Context, base string, reqs, errs, bytes *atomic.Int64) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer c.CloseIdleConnections()
	fetch := func(url string) (string, bool) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				errs.Add(1)
			}
			return "", false
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			if ctx.Err() == nil {
				errs.Add(1)
			}
			return "", false
		}
		reqs.Add(1)
		bytes.Add(int64(len(b)))
		return string(b), true
	}
	pl, ok := fetch(base + "video1_stream.m3u8")
	for ctx.Err() == nil {
		if !ok {
			select {
			case <-time.After(200 * time.Millisecond):
			case <-ctx.Done():
				return
			}
			pl, ok = fetch(base + "video1_stream.m3u8")
			continue
		}
		msn, part, ok2 := nextPartOf(pl)
		if !ok2 {
			ok = false
			continue
		}
		pl, ok = fetch(base + "video1_stream.m3u8?_HLS_msn=" + strconv.Itoa(msn) + "&_HLS_part=" + strconv.Itoa(part))
		if !ok {
			continue
		}
		if ms := rePart.FindAllStringSubmatch(pl, -1); len(ms) > 0 {
			fetch(base + ms[len(ms)-1][1])
		}
	}
}

// nextPartOf is nextPart without a test.
func nextPartOf(pl string) (msn, part int, ok bool) {
	m := reSeq.FindStringSubmatch(pl)
	if m == nil {
		return 0, 0, false
	}
	seq, _ := strconv.Atoi(m[1])
	tail := pl
	if i := strings.LastIndex(pl, "#EXTINF:"); i >= 0 {
		tail = pl[i:]
	}
	return seq + strings.Count(pl, "#EXTINF:"), strings.Count(tail, "#EXT-X-PART:"), true
}
