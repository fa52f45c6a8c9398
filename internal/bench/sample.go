package bench

import (
	"bufio"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// procSample reads the soak's figures, in soakFigures' order: RSS in MB,
// goroutines, open file descriptors, and the kernel's TCP memory in KB
// (the whole host's, from /proc/net/sockstat: what slow readers pin).
func procSample() []float64 {
	_, rss := memKB()
	fds := -1.0
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		fds = float64(len(ents))
	}
	tcp := -1.0
	if f, err := os.Open("/proc/net/sockstat"); err == nil {
		if pages, ok := parseSockstatTCPMem(f); ok {
			tcp = float64(pages * int64(os.Getpagesize()) / 1024)
		}
		f.Close()
	}
	return []float64{float64(rss) / 1024, float64(runtime.NumGoroutine()), fds, tcp}
}

// parseSockstatTCPMem reads the "mem" field, in pages, of sockstat's TCP
// line ("TCP: inuse 5 orphan 0 tw 2 alloc 7 mem 3").
func parseSockstatTCPMem(r io.Reader) (int64, bool) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "TCP:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		for i := 0; i+1 < len(f); i += 2 {
			if f[i] == "mem" {
				n, err := strconv.ParseInt(f[i+1], 10, 64)
				return n, err == nil
			}
		}
	}
	return 0, false
}
