package testmedia

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"io"
	"math"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// A glass-to-glass clock: each video frame carries, burned in as black and
// white blocks, the wall-clock time (Unix ms) at which it was generated. A
// viewer that decodes a frame and reads the code back knows how old the
// picture it shows is, whatever the relay, player or buffering in between.
//
// The code is a grid of square blocks, the frame's width / clockColumns
// wide (16 px at 640), in two rows starting one block from the top-left
// corner:
//
//	column 0      start marker: row 0 white, row 1 black
//	columns 1-24  48 bits, most significant first, row 0 then row 1:
//	              42 bits of Unix ms, then a 6-bit check of those
//	column 25     stop marker: row 0 black, row 1 white
//
// The markers give the decoder its white and black levels, so it reads
// limited- or full-range output, a canvas capture or a PNG alike. Blocks
// on the 16 px grid are x264's macroblocks: a modest bitrate keeps them.
const (
	clockColumns  = 40 // the frame is this many blocks wide
	clockDataBits = 48
	clockMsBits   = 42 // Unix ms fit in 42 bits until the year 2109
	clockCodeCols = clockDataBits/2 + 2
)

// Luma of the code's blocks and of the frame around them (limited range).
const (
	lumaBlack = 16
	lumaWhite = 235
	lumaField = 96
)

// ClockOptions shape a clock stream. The zero value is 640x360 at 30 fps,
// 1 Mbit/s of H.264 with a keyframe every second, and a 1 kHz AAC tone.
type ClockOptions struct {
	Width, Height int    // default 640x360; Width a multiple of 40*2
	FPS           int    // default 30
	GOP           int    // frames between keyframes, default FPS
	Bitrate       string // x264's -b:v, default "1M"
	Silent        bool   // silent audio instead of the tone
	Format        string // ffmpeg's muxer, default "flv"
}

func (o ClockOptions) withDefaults() ClockOptions {
	if o.Width <= 0 || o.Height <= 0 {
		o.Width, o.Height = 640, 360
	}
	if o.FPS <= 0 {
		o.FPS = 30
	}
	if o.GOP <= 0 {
		o.GOP = o.FPS
	}
	if o.Bitrate == "" {
		o.Bitrate = "1M"
	}
	if o.Format == "" {
		o.Format = "flv"
	}
	return o
}

// clockCheck is the 6-bit check of a 42-bit stamp: a sum of its seven 6-bit
// groups weighted by odd numbers, so any one flipped block (an odd weight
// times a power of two below 64 is never 0 mod 64) or two swapped groups show.
func clockCheck(ms uint64) uint64 {
	var sum uint64
	for i := range uint64(7) {
		sum += (2*i + 1) * ((ms >> (6 * i)) & 63)
	}
	return (sum ^ 0x2a) & 63
}

// clockBits is the 48-bit code of ms.
func clockBits(ms int64) uint64 {
	m := uint64(ms) & (1<<clockMsBits - 1)
	return m<<6 | clockCheck(m)
}

// DrawClock draws the clock code of ms into the luma plane y of a frame of
// the given width and stride (a yuv420p frame's first plane). The rest of
// the plane is left as it is.
func DrawClock(y []byte, width, stride int, ms int64) {
	b := width / clockColumns
	bits := clockBits(ms)
	fill := func(col, row int, white bool) {
		v := byte(lumaBlack)
		if white {
			v = lumaWhite
		}
		x0, y0 := (col+1)*b, (row+1)*b
		for yy := y0; yy < y0+b; yy++ {
			line := y[yy*stride+x0 : yy*stride+x0+b]
			for i := range line {
				line[i] = v
			}
		}
	}
	fill(0, 0, true)
	fill(0, 1, false)
	fill(clockCodeCols-1, 0, false)
	fill(clockCodeCols-1, 1, true)
	for i := range clockDataBits {
		row, col := i/(clockDataBits/2), 1+i%(clockDataBits/2)
		fill(col, row, bits>>(clockDataBits-1-i)&1 == 1)
	}
}

// ReadClock reads the clock code from a decoded frame of a clock stream
// (scaled or not: positions are taken relative to the image's width). It
// returns false when there is no valid code: no markers, or a failed check.
func ReadClock(img image.Image) (time.Time, bool) {
	r := img.Bounds()
	b := float64(r.Dx()) / clockColumns
	if b < 2 || float64(r.Dy()) < 3*b {
		return time.Time{}, false
	}
	// The mean luma of the middle half of block (col, row).
	block := func(col, row int) float64 {
		x0 := r.Min.X + int(float64(col+1)*b+b/4)
		y0 := r.Min.Y + int(float64(row+1)*b+b/4)
		n := max(int(b/2), 1)
		var sum float64
		for yy := y0; yy < y0+n; yy++ {
			for xx := x0; xx < x0+n; xx++ {
				sum += float64(color.GrayModel.Convert(img.At(xx, yy)).(color.Gray).Y)
			}
		}
		return sum / float64(n*n)
	}
	return decodeClock(block)
}

// decodeClock checks the markers, thresholds the data blocks halfway between
// the markers' black and white, and checks the stamp.
func decodeClock(block func(col, row int) float64) (time.Time, bool) {
	white := (block(0, 0) + block(clockCodeCols-1, 1)) / 2
	black := (block(0, 1) + block(clockCodeCols-1, 0)) / 2
	if white-black < 64 {
		return time.Time{}, false
	}
	mid := (white + black) / 2
	var bits uint64
	for i := range clockDataBits {
		row, col := i/(clockDataBits/2), 1+i%(clockDataBits/2)
		bits <<= 1
		if block(col, row) > mid {
			bits |= 1
		}
	}
	ms := bits >> 6
	if bits&63 != clockCheck(ms) || ms == 0 {
		return time.Time{}, false
	}
	return time.UnixMilli(int64(ms)), true
}

// ClockJS defines window.mediapipeReadClock(video): it draws the video's
// current frame into a canvas at the video's own size and returns the Unix
// ms burned into it, or null when there is no frame or no valid code. It
// decodes exactly as ReadClock does. A browser test evaluates it once, then
// computes Date.now() - mediapipeReadClock(video).
const ClockJS = `(() => {
  const COLS = 40, BITS = 48, CODE = BITS / 2 + 2;
  let canvas = null, ctx = null;
  const check = (ms) => { // ms as a BigInt
    let sum = 0n;
    for (let i = 0n; i < 7n; i++) sum += (2n * i + 1n) * ((ms >> (6n * i)) & 63n);
    return (sum ^ 0x2an) & 63n;
  };
  window.mediapipeReadClock = (video) => {
    const w = video.videoWidth, h = video.videoHeight;
    if (!w || !h) return null;
    if (!canvas) { canvas = document.createElement('canvas'); ctx = canvas.getContext('2d', {willReadFrequently: true}); }
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    ctx.drawImage(video, 0, 0, w, h);
    const b = w / COLS;
    if (b < 2 || h < 3 * b) return null;
    const n = Math.max(Math.floor(b / 2), 1);
    const px = ctx.getImageData(0, 0, w, Math.ceil(3 * b) + 1).data;
    const block = (col, row) => {
      const x0 = Math.floor((col + 1) * b + b / 4), y0 = Math.floor((row + 1) * b + b / 4);
      let sum = 0;
      for (let y = y0; y < y0 + n; y++) for (let x = x0; x < x0 + n; x++) {
        const i = (y * w + x) * 4;
        sum += (19595 * px[i] + 38470 * px[i + 1] + 7471 * px[i + 2] + 32768) >> 16;
      }
      return sum / (n * n);
    };
    const white = (block(0, 0) + block(CODE - 1, 1)) / 2, black = (block(0, 1) + block(CODE - 1, 0)) / 2;
    if (white - black < 64) return null;
    const mid = (white + black) / 2;
    let bits = 0n;
    for (let i = 0; i < BITS; i++) {
      const row = Math.floor(i / (BITS / 2)), col = 1 + i % (BITS / 2);
      bits = (bits << 1n) | (block(col, row) > mid ? 1n : 0n);
    }
    const ms = bits >> 6n;
    if ((bits & 63n) !== check(ms) || ms === 0n) return null;
    return Number(ms);
  };
})();`

// PushClock starts ffmpeg encoding a clock stream made here, frame by frame
// in real time by the wall clock, to url (an rtmp:// URL or a file, in
// opts.Format), with an AAC track made here too. ffmpeg's stderr is kept as
// Push keeps it (see Stderr). Frames are written until ctx ends; then
// ffmpeg's input is closed and it ends its output cleanly. The process is
// killed when the test ends; wait for it with cmd.Wait.
func PushClock(t testing.TB, ctx context.Context, url string, opts ClockOptions) *exec.Cmd {
	t.Helper()
	NeedFFmpeg(t)
	o := opts.withDefaults()
	if o.Width%(clockColumns*2) != 0 || o.Height%2 != 0 || o.Height < 3*o.Width/clockColumns {
		t.Fatalf("testmedia: clock size %dx%d: want the width a multiple of %d and room for the code", o.Width, o.Height, clockColumns*2)
	}
	args := []string{
		"-hide_banner", "-loglevel", "error",
		// Raw inputs need no probing; probing the pictures for seconds
		// would fill the sound's pipe, which is written with them.
		"-probesize", "32", "-analyzeduration", "0",
		"-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", fmt.Sprintf("%dx%d", o.Width, o.Height),
		"-r", strconv.Itoa(o.FPS), "-i", "pipe:0",
		// The sound comes from here too, written with the frames: the
		// muxer holds each video packet until it has audio as late, so
		// audio paced apart (lavfi with -re) added 50-150 ms, varying with
		// how the two inputs started. Written ahead by clockAudioLead, it
		// holds nothing.
		"-f", "s16le", "-ar", strconv.Itoa(clockRate), "-ac", "1",
		"-probesize", "32", "-analyzeduration", "0", "-i", "pipe:3",
		"-map", "0:v", "-map", "1:a",
		"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
		"-b:v", o.Bitrate, "-g", strconv.Itoa(o.GOP), "-keyint_min", strconv.Itoa(o.GOP), "-sc_threshold", "0",
		"-c:a", "aac", "-b:a", "64k", "-ar", "44100", "-ac", "1",
		"-flush_packets", "1",
		"-f", o.Format, url,
	}
	// Not CommandContext: ctx's end closes the input so ffmpeg finishes the
	// stream (an FLV end, an RTMP unpublish) instead of being killed.
	cmd := exec.Command("ffmpeg", args...)
	cmd.Stderr = &syncBuffer{}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("testmedia: %v", err)
	}
	audioR, audioW, err := os.Pipe()
	if err != nil {
		t.Fatalf("testmedia: %v", err)
	}
	cmd.ExtraFiles = []*os.File{audioR} // ffmpeg's fd 3
	if err := cmd.Start(); err != nil {
		audioR.Close()
		audioW.Close()
		t.Fatalf("testmedia: starting ffmpeg: %v", err)
	}
	audioR.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer stdin.Close()
		defer audioW.Close()
		writeClock(ctx, stdin, audioW, o)
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		<-done
	})
	return cmd
}

// The clock's sound: mono 16-bit PCM, a 1 kHz tone (or silence), written
// this far ahead of the pictures.
const (
	clockRate      = 44100
	clockAudioLead = 100 * time.Millisecond
)

// writeClock writes yuv420p frames to w at o.FPS by the wall clock until
// ctx ends or a write fails, each stamped with the time it was made, and
// their sound to audio, clockAudioLead ahead. A late frame (the machine
// stalled) is sent at once with the time it is made and the schedule
// restarts from it: the stamps stay true, the frame rate dips (the sound
// follows the frame count, as the video's timestamps do).
func writeClock(ctx context.Context, w, audio io.Writer, o ClockOptions) {
	var pcm []byte
	samples := 0 // written so far
	sound := func(upTo int) error {
		pcm = pcm[:0]
		for ; samples < upTo; samples++ {
			var v int16
			if !o.Silent {
				v = int16(8000 * math.Sin(2*math.Pi*1000*float64(samples)/clockRate))
			}
			pcm = binary.LittleEndian.AppendUint16(pcm, uint16(v))
		}
		_, err := audio.Write(pcm)
		return err
	}
	lead := int(clockAudioLead * clockRate / time.Second)
	ySize := o.Width * o.Height
	frame := make([]byte, ySize+ySize/2)
	for i := range frame[ySize:] {
		frame[ySize+i] = 128
	}
	bw := bufio.NewWriterSize(w, len(frame))
	start := time.Now()
	period := time.Second / time.Duration(o.FPS)
	timer := time.NewTimer(0)
	defer timer.Stop()
	bar := o.Width / clockColumns
	for n := 0; ; n++ {
		if wait := time.Until(start.Add(time.Duration(n) * period)); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			return
		} else if -wait > period {
			// Late by more than a frame (ffmpeg starting, or the machine
			// stalled): go on from now rather than send a burst.
			start = time.Now().Add(-time.Duration(n) * period)
		}
		// A grey field with a moving bar below the code, so the picture
		// changes every frame as a real one does.
		y := frame[:ySize]
		for i := range y {
			y[i] = lumaField
		}
		x0 := (n * 4) % (o.Width - bar)
		for yy := 4 * bar; yy < o.Height; yy++ {
			row := y[yy*o.Width+x0 : yy*o.Width+x0+bar]
			for i := range row {
				row[i] = lumaWhite
			}
		}
		DrawClock(y, o.Width, o.Width, time.Now().UnixMilli())
		if _, err := bw.Write(frame); err != nil {
			return
		}
		if bw.Flush() != nil {
			return
		}
		if sound(lead+(n+1)*clockRate/o.FPS) != nil {
			return
		}
	}
}

// ClockFrames decodes up to max frames of the clock stream at url with
// ffmpeg (extra goes before -i) as grey images of its own size, calling
// each(img, got) with the wall-clock time each frame came out of the
// decoder, until each returns false, max frames, or ctx ends.
func ClockFrames(ctx context.Context, url string, width, height, max int, each func(img *image.Gray, got time.Time) bool, extra ...string) error {
	args := append([]string{"-hide_banner", "-loglevel", "error", "-nostdin"}, extra...)
	args = append(args, "-i", url, "-map", "0:v:0", "-frames:v", strconv.Itoa(max),
		"-vf", fmt.Sprintf("scale=%d:%d", width, height), "-pix_fmt", "gray",
		// Each decoded frame once: a constant-rate output would repeat frames over gaps.
		"-fps_mode", "passthrough", "-f", "rawvideo", "pipe:1")
	cmd := exec.CommandContext(ctx, "ffmpeg", args...)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting ffmpeg: %w", err)
	}
	r := bufio.NewReaderSize(out, width*height)
	var readErr error
	for {
		img := image.NewGray(image.Rect(0, 0, width, height))
		if _, readErr = io.ReadFull(r, img.Pix); readErr != nil {
			break
		}
		if !each(img, time.Now()) {
			break
		}
	}
	if readErr == nil { // stopped by each: ffmpeg is not needed further
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil
	}
	if err := cmd.Wait(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("ffmpeg decoding %s: %w\n%s", url, err, stderr.String())
	}
	return nil
}
