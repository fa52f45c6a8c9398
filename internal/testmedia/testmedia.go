// Package testmedia gives tests real media made by ffmpeg: a short H.264/AAC
// FLV clip, its tags, per-packet hashes and an RTMP pusher. Tests skip when ffmpeg is missing.
package testmedia

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core/media/flv"
)

// Options shape the generated clip. The zero value is the default clip:
// 320x180 testsrc2 at 30 fps with a 1 kHz sine, 5 s, a keyframe every 30 frames.
type Options struct {
	Seconds int // default 5
	Width   int // default 320
	Height  int // default 180
	FPS     int // default 30
	GOP     int // frames between keyframes, default 30
}

func (o Options) withDefaults() Options {
	if o.Seconds <= 0 {
		o.Seconds = 5
	}
	if o.Width <= 0 {
		o.Width = 320
	}
	if o.Height <= 0 {
		o.Height = 180
	}
	if o.FPS <= 0 {
		o.FPS = 30
	}
	if o.GOP <= 0 {
		o.GOP = 30
	}
	return o
}

var (
	cacheMu  sync.Mutex
	cacheDir string
	clips    = map[Options]string{}
)

// ffmpegTimeout bounds every ffmpeg run a helper starts, so a stuck ffmpeg
// fails its test instead of hanging the whole package.
const ffmpegTimeout = 2 * time.Minute

// NeedFFmpeg skips the test when ffmpeg (and ffprobe) are not on PATH.
func NeedFFmpeg(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found on PATH: install ffmpeg to run this test", tool)
		}
	}
}

// Clip returns the path of an FLV clip made with opts. It is generated once
// per test binary and kept in a temporary directory shared by all tests
// (left behind for the OS to clean; a few hundred KB).
func Clip(t testing.TB, opts Options) string {
	t.Helper()
	NeedFFmpeg(t)
	o := opts.withDefaults()
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if p, ok := clips[o]; ok {
		return p
	}
	if cacheDir == "" {
		d, err := os.MkdirTemp("", "mediapipe-testmedia-")
		if err != nil {
			t.Fatalf("testmedia: %v", err)
		}
		cacheDir = d
	}
	path := filepath.Join(cacheDir, fmt.Sprintf("clip-%dx%d-%dfps-%ds-g%d.flv", o.Width, o.Height, o.FPS, o.Seconds, o.GOP))
	args := []string{
		"-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=%dx%d:rate=%d", o.Width, o.Height, o.FPS),
		"-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=44100",
		"-t", strconv.Itoa(o.Seconds),
		"-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main", "-pix_fmt", "yuv420p",
		"-g", strconv.Itoa(o.GOP), "-keyint_min", strconv.Itoa(o.GOP), "-sc_threshold", "0", "-bf", "0",
		"-c:a", "aac", "-b:a", "64k", "-ar", "44100", "-ac", "1",
		"-f", "flv", path,
	}
	ctx, cancel := context.WithTimeout(context.Background(), ffmpegTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ffmpeg", args...).CombinedOutput(); err != nil {
		t.Fatalf("testmedia: making clip: %v\n%s", err, out)
	}
	clips[o] = path
	return path
}

// Tags returns every tag of the FLV file at path (header + body, no
// PreviousTagSize), as core/media/flv reads them.
func Tags(t testing.TB, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("testmedia: %v", err)
	}
	defer f.Close()
	tags, err := flv.ReadAll(bufio.NewReader(f))
	if err != nil {
		t.Fatalf("testmedia: reading %s: %v", path, err)
	}
	return tags
}

// MediaTags keeps only audio and video tags: what must cross a relay
// byte for byte (script data may be rewritten by ffmpeg).
func MediaTags(tags [][]byte) [][]byte {
	var out [][]byte
	for _, tag := range tags {
		if len(tag) > 0 && (tag[0]&0x1f == flv.TypeAudio || tag[0]&0x1f == flv.TypeVideo) {
			out = append(out, tag)
		}
	}
	return out
}

// Frame is one line of ffmpeg's framemd5 output: one packet.
type Frame struct {
	Stream   int
	DTS, PTS int64
	Duration int64
	Size     int
	Hash     string
}

func (f Frame) String() string {
	return fmt.Sprintf("#%d dts=%d pts=%d size=%d %s", f.Stream, f.DTS, f.PTS, f.Size, f.Hash)
}

// DecodeArgs are ffmpeg's arguments to decode input fully and print only
// complaints. The null encoder gets FLV's own millisecond time base: in its
// default 1/fps one, a file that starts at 17 ms (audio first, as a mid-stream
// join does) rounds two frames onto one tick and the null muxer warns about
// "non monotonically increasing dts", which says nothing about the media.
func DecodeArgs(input string) []string {
	return []string{"-hide_banner", "-v", "error", "-nostdin", "-i", input, "-enc_time_base:v", "1:1000", "-f", "null", "-"}
}

// DecodeClean decodes input fully with ffmpeg and fails on any complaint.
func DecodeClean(t testing.TB, input string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ffmpegTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ffmpeg", DecodeArgs(input)...).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("testmedia: decoding %s is not clean: %v\n%s", input, err, out)
	}
}

// FrameMD5 runs `ffmpeg [extra...] -i input -c copy -f framemd5 -` and returns
// one Frame per packet. input may be a file or a URL; extra goes before -i
// (for example "-rw_timeout", "5000000").
func FrameMD5(t testing.TB, input string, extra ...string) []Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ffmpegTimeout)
	defer cancel()
	frames, stderr, err := FrameMD5Err(ctx, input, extra...)
	if err != nil {
		t.Fatalf("testmedia: framemd5 of %s: %v\n%s", input, err, stderr)
	}
	return frames
}

// FrameMD5Err is FrameMD5 without the test: it returns ffmpeg's stderr and error.
func FrameMD5Err(ctx context.Context, input string, extra ...string) ([]Frame, string, error) {
	args := append([]string{"-hide_banner", "-loglevel", "error", "-nostdin"}, extra...)
	args = append(args, "-i", input, "-map", "0", "-c", "copy", "-f", "framemd5", "-")
	cmd := exec.CommandContext(ctx, "ffmpeg", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	frames, perr := ParseFrameMD5(stdout.Bytes())
	if err == nil {
		err = perr
	}
	return frames, stderr.String(), err
}

// Viewing is what a background ffmpeg viewer started by View saw, and how
// it ended.
type Viewing struct {
	Frames []Frame
	Stderr string
	Err    error
}

// View runs an ffmpeg viewer of url in the background, printing framemd5
// with the timestamps as sent: killed after limit or when the test ends, and
// its reads time out if the socket goes quiet for 20 s.
func View(t testing.TB, url string, limit time.Duration) <-chan Viewing {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	t.Cleanup(cancel)
	done := make(chan Viewing, 1)
	go func() {
		f, e, err := FrameMD5Err(ctx, url, "-rw_timeout", "20000000", "-copyts")
		done <- Viewing{f, e, err}
	}()
	return done
}

// ParseFrameMD5 parses framemd5 text: "stream, dts, pts, duration, size, hash".
func ParseFrameMD5(out []byte) ([]Frame, error) {
	var frames []Frame
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Split(line, ",")
		if len(f) != 6 {
			return frames, fmt.Errorf("framemd5: odd line %q", line)
		}
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		var fr Frame
		var err error
		nums := []*int64{nil, &fr.DTS, &fr.PTS, &fr.Duration}
		if fr.Stream, err = strconv.Atoi(f[0]); err != nil {
			return frames, fmt.Errorf("framemd5: %q: %w", line, err)
		}
		for i := 1; i <= 3; i++ {
			if *nums[i], err = strconv.ParseInt(f[i], 10, 64); err != nil {
				return frames, fmt.Errorf("framemd5: %q: %w", line, err)
			}
		}
		if fr.Size, err = strconv.Atoi(f[4]); err != nil {
			return frames, fmt.Errorf("framemd5: %q: %w", line, err)
		}
		fr.Hash = f[5]
		frames = append(frames, fr)
	}
	return frames, nil
}

// Push starts `ffmpeg [-re] -i clip -c copy -f flv url` and returns the
// running command; ffmpeg's stderr is kept in the command's Stderr buffer
// (a *bytes.Buffer). The process is killed when ctx ends or the test ends.
func Push(t testing.TB, ctx context.Context, clip, url string, realtime bool) *exec.Cmd {
	t.Helper()
	NeedFFmpeg(t)
	args := []string{"-hide_banner", "-loglevel", "error", "-nostdin"}
	if realtime {
		args = append(args, "-re")
	}
	args = append(args, "-i", clip, "-c", "copy", "-f", "flv", url)
	cmd := exec.CommandContext(ctx, "ffmpeg", args...)
	cmd.Stderr = &syncBuffer{}
	if err := cmd.Start(); err != nil {
		t.Fatalf("testmedia: starting ffmpeg: %v", err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}

// Stderr returns what a command started by Push wrote to stderr so far.
func Stderr(cmd *exec.Cmd) string {
	if b, ok := cmd.Stderr.(*syncBuffer); ok {
		return b.String()
	}
	return ""
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// ChildProcs lists the /proc/PID/stat paths of processes named one of names
// (the kernel's comm) whose parent is this test binary: what a test checks
// to know that no ffmpeg or plugin it caused to start was left behind.
func ChildProcs(names ...string) []string {
	var found []string
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	me := strconv.Itoa(os.Getpid())
	for _, st := range stats {
		b, err := os.ReadFile(st)
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(s[i+1:])
		comm := s[strings.IndexByte(s, '(')+1 : i]
		if len(fields) > 1 && fields[1] == me && slices.Contains(names, comm) {
			found = append(found, st)
		}
	}
	return found
}
