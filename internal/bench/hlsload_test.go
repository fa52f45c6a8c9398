package bench

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2"
	"github.com/bluenviron/gohlslib/v2/pkg/codecs"

	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/internal/testmedia"
)

// avcConfig returns the SPS and PPS of an AVCDecoderConfigurationRecord.
func avcConfig(t *testing.T, rec []byte) (sps, pps []byte) {
	t.Helper()
	if len(rec) < 8 {
		t.Fatal("short avcC")
	}
	p := rec[5:]
	n := int(p[0] & 0x1f)
	p = p[1:]
	for range n {
		l := int(binary.BigEndian.Uint16(p))
		if sps == nil {
			sps = p[2 : 2+l]
		}
		p = p[2+l:]
	}
	n = int(p[0])
	p = p[1:]
	for range n {
		l := int(binary.BigEndian.Uint16(p))
		if pps == nil {
			pps = p[2 : 2+l]
		}
		p = p[2+l:]
	}
	return sps, pps
}

// nalus splits AVCC (4-byte length-prefixed) NAL units.
func nalus(b []byte) [][]byte {
	var out [][]byte
	for len(b) >= 4 {
		l := int(binary.BigEndian.Uint32(b))
		if l == 0 || l > len(b)-4 {
			break
		}
		out = append(out, b[4:4+l])
		b = b[4+l:]
	}
	return out
}

// hlsServer serves an LL-HLS stream of the test clip's video from a
// gohlslib muxer, fed in real time in a loop until the test ends; over
// HTTPS when secure, with caFile the PEM of its certificate.
func hlsServer(t *testing.T, secure bool) (url, caFile string) {
	t.Helper()
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{Seconds: 4}))
	var sps, pps []byte
	type frame struct {
		dts, cts int64 // ms
		au       [][]byte
	}
	var frames []frame
	for _, tag := range tags {
		h, err := flv.ParseHeader(tag)
		if err != nil || h.Type != flv.TypeVideo {
			continue
		}
		body := tag[flv.HeaderSize:] // testmedia.Tags carry no PreviousTagSize
		if len(body) < 5 || body[0]&0x0f != 7 {
			continue
		}
		cts := int64(int32(uint32(body[2])<<16|uint32(body[3])<<8|uint32(body[4])) << 8 >> 8)
		switch body[1] {
		case 0:
			sps, pps = avcConfig(t, body[5:])
		case 1:
			au := nalus(body[5:])
			if body[0]>>4 == 1 { // a keyframe: the muxer wants SPS and PPS in band
				au = append([][]byte{sps, pps}, au...)
			}
			frames = append(frames, frame{int64(h.Timestamp), cts, au})
		}
	}
	if sps == nil || len(frames) == 0 {
		t.Fatal("the clip has no H.264")
	}
	track := &gohlslib.Track{Codec: &codecs.H264{SPS: sps, PPS: pps}, ClockRate: 90000}
	mux := &gohlslib.Muxer{Tracks: []*gohlslib.Track{track}, PartMinDuration: 200 * time.Millisecond}
	if err := mux.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		start := time.Now()
		loop := frames[len(frames)-1].dts + 33
		for n := int64(0); ; n++ {
			for _, f := range frames {
				dts := n*loop + f.dts
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Until(start.Add(time.Duration(dts) * time.Millisecond))):
				}
				if err := mux.WriteH264(track, time.Now(), (dts+f.cts)*90, f.au); err != nil {
					t.Errorf("muxer: %v", err)
					return
				}
			}
		}
	}()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(mux.Handle))
	if secure {
		srv.StartTLS()
		caFile = filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
			t.Fatal(err)
		}
	} else {
		srv.Start()
	}
	t.Cleanup(func() {
		cancel()
		<-fed
		mux.Close() // first: it lets go of requests it holds
		srv.Close()
	})
	return srv.URL + "/index.m3u8", caFile
}

// Viewers of an LL-HLS muxer make blocking reloads (held by the server
// until the next part exists, so about a part's duration), fetch every
// new part, and report their bytes, with no errors; a server that is not
// there is counted as errors, not hung on.
func TestHLSLoad(t *testing.T) {
	url, _ := hlsServer(t, false)
	rep, err := HLSLoad{URL: url, Viewers: 20, Duration: 4 * time.Second, Spread: 500 * time.Millisecond}.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", *rep)
	if rep.Errors != 0 {
		t.Errorf("%d errors: %v", rep.Errors, rep.ErrorKinds)
	}
	if rep.Started != 20 || rep.Playing != 20 {
		t.Errorf("%d viewers started, %d playing at the end, want 20", rep.Started, rep.Playing)
	}
	// 4 s at 200 ms parts: each viewer makes a blocking reload and takes
	// a part about every 200 ms once it has joined (the muxer's first
	// segment takes a second or so).
	if rep.Blocking < 20*5 || rep.Parts < 20*5 || rep.Inits != 20 {
		t.Errorf("blocking reloads %d, parts %d, inits %d: want ≥ 100, ≥ 100, 20", rep.Blocking, rep.Parts, rep.Inits)
	}
	if rep.Blocking > 20*4*10 {
		t.Errorf("%d blocking reloads in 4 s by 20 viewers: not blocking", rep.Blocking)
	}
	if rep.BlockP50ms < 20 {
		t.Errorf("blocking reloads held %v ms (median): the server did not block", rep.BlockP50ms)
	}
	if rep.Bytes < rep.Parts*1000 {
		t.Errorf("%d bytes for %d parts", rep.Bytes, rep.Parts)
	}

	var hits atomic.Int64
	gone := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.NotFound(w, r)
	}))
	defer gone.Close()
	rep, err = HLSLoad{URL: gone.URL + "/live/x/index.m3u8", Viewers: 3, Duration: 1500 * time.Millisecond}.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors == 0 || rep.ErrorKinds["status 404"] != rep.Errors || rep.Started != 0 {
		t.Errorf("against a 404 server: %+v", *rep)
	}
	// Retried about once a second per viewer, not in a tight loop.
	if n := hits.Load(); n > 3*3 {
		t.Errorf("%d requests to a 404 server by 3 viewers in 1.5 s", n)
	}
	if _, err := (HLSLoad{URL: "ftp://x", Viewers: 1, Duration: time.Second}).Run(context.Background()); err == nil || !strings.Contains(err.Error(), "URL") {
		t.Errorf("an ftp URL: %v", err)
	}
}

// `mediapipe bench --hls-url` runs the load and prints its report; bad
// flags are refused with exit status 2.
func TestHLSLoadCommand(t *testing.T) {
	url, ca := hlsServer(t, true)
	var out, errb strings.Builder
	code := Main([]string{"--hls-url", url, "--hls-ca", ca, "--hls-viewers", "3", "--duration", "3s", "--json",
		"--hls-server-pid", strconv.Itoa(os.Getpid())}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	var rep HLSReport
	if err := json.Unmarshal([]byte(out.String()), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if rep.Viewers != 3 || rep.Parts == 0 || rep.Bytes == 0 || rep.Errors != 0 {
		t.Errorf("report: %+v", rep)
	}
	// The server is this process: its CPU is the load's and the muxer's.
	// (/proc counts in 10 ms ticks: two of slack on a 3 s run.)
	if rep.ServerCPU <= 0 || rep.ServerCPU < rep.ClientCPU*0.9-0.02 || rep.ServerCorePerViewer <= 0 {
		t.Errorf("server CPU %v s (%v per viewer), client %v s", rep.ServerCPU, rep.ServerCorePerViewer, rep.ClientCPU)
	}
	// Without the CA, the server's certificate is refused: every request fails.
	out.Reset()
	if code := Main([]string{"--hls-url", url, "--hls-viewers", "1", "--duration", "1s", "--json"}, &out, &errb); code != 1 {
		t.Errorf("an unverifiable server: exit %d, want 1", code)
	}
	for _, bad := range [][]string{
		{"--hls-url", url, "--hls-viewers", "0"},
		{"--hls-url", url, "--hls-conns", "0"},
		{"--hls-url", url, "--soak", "1m"},
		{"--hls-url", url, "--hls-ca", "/nonexistent.pem"},
	} {
		if code := Main(bad, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2", bad, code)
		}
	}
}
