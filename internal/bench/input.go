package bench

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/mediapipe/mediapipe/core/media/flv"
)

// clip is what every publisher pushes: the init tags once, then the media
// tags in a loop, their timestamps shifted by period per lap.
type clip struct {
	Source string  // file path, or "synthetic ..."
	Init   []tag   // onMetaData and sequence headers, sent once at the start
	Media  []tag   // audio and video tags, timestamps from 0
	Period uint32  // ms one lap lasts; the next lap's timestamps add it
	Bytes  int     // body bytes of Media
	Kbps   float64 // media bitrate of one lap
}

// tag is one FLV tag split into what RTMP carries: type, timestamp, body.
type tag struct {
	Type uint8
	TS   uint32
	Body []byte
	Key  bool // a video keyframe (not a sequence header)
}

// loadClip reads an FLV file into a clip.
func loadClip(path string) (*clip, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw, err := flv.ReadAll(bufio.NewReaderSize(f, 1<<16))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	c := &clip{Source: path}
	var first uint32
	haveFirst := false
	for _, t := range raw {
		h, err := flv.Check(t, 0)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		body := t[flv.HeaderSize:]
		tg := tag{Type: h.Type, TS: h.Timestamp, Body: body}
		switch {
		case h.Type == flv.TypeScript:
			if len(c.Media) == 0 {
				c.Init = append(c.Init, tg)
			}
			continue
		case h.Type == flv.TypeVideo || h.Type == flv.TypeAudio:
			if !loopable(h.Type, body) {
				continue
			}
			if flv.InitKindOf(h.Type, body) != flv.InitNone {
				c.Init = append(c.Init, tg)
				continue
			}
			tg.Key = h.Type == flv.TypeVideo && flv.IsVideoKeyframe(body)
		default:
			continue
		}
		if !haveFirst {
			first, haveFirst = tg.TS, true
		}
		tg.TS -= first
		c.Media = append(c.Media, tg)
		c.Bytes += len(body)
	}
	if len(c.Media) == 0 {
		return nil, fmt.Errorf("%s: no audio or video tags", path)
	}
	// Publishers send tags in timestamp order; FLV files are in decode order,
	// which for a clip without B-frames is the same, but be sure.
	sort.SliceStable(c.Media, func(i, j int) bool { return c.Media[i].TS < c.Media[j].TS })
	c.finish()
	return c, nil
}

// loopable reports an audio or video tag body a publisher may send over and
// over: one that parses and is not an AVC end of sequence, which would end
// the stream for a player mid-loop.
func loopable(typ uint8, body []byte) bool {
	if typ == flv.TypeAudio {
		_, ok := flv.ParseAudio(body)
		return ok
	}
	v, ok := flv.ParseVideo(body)
	return ok && v.PacketType != flv.AVCEndOfSequence
}

// finish sets Period (last timestamp plus one frame gap) and Kbps, and makes
// sure each (timestamp, type) is unique: the bench matches viewer tags to
// published tags by it.
func (c *clip) finish() {
	last := c.Media[len(c.Media)-1].TS
	gap := uint32(33)
	for i := len(c.Media) - 1; i > 0; i-- {
		if c.Media[i].Type == flv.TypeVideo {
			for j := i - 1; j >= 0; j-- {
				if c.Media[j].Type == flv.TypeVideo && c.Media[j].TS < c.Media[i].TS {
					gap = c.Media[i].TS - c.Media[j].TS
					break
				}
			}
			break
		}
	}
	c.Period = last + gap
	seen := map[uint64]bool{}
	kept := c.Media[:0]
	c.Bytes = 0
	for _, t := range c.Media {
		k := uint64(t.TS)<<8 | uint64(t.Type)
		if seen[k] {
			continue // a duplicate key cannot be told apart from its twin
		}
		seen[k] = true
		kept = append(kept, t)
		c.Bytes += len(t.Body)
	}
	c.Media = kept
	if c.Period > 0 {
		c.Kbps = float64(c.Bytes) * 8 / float64(c.Period)
	}
}

// generatedClip returns a clip made by ffmpeg (testsrc2 + sine, H.264/AAC at
// kbps, a keyframe every 2 s), cached in the user's cache directory.
func generatedClip(kbps int, seconds int) (*clip, error) {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		return nil, errors.New("ffmpeg not found on PATH")
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	dir = filepath.Join(dir, "mediapipe-bench")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, fmt.Sprintf("clip-640x360-30fps-%dk-%ds-g60.flv", kbps, seconds))
	if _, err := os.Stat(path); err != nil {
		tmp := path + ".tmp" + strconv.Itoa(os.Getpid()) + ".flv"
		vk := kbps - 64
		if vk < 50 {
			vk = 50
		}
		args := []string{
			"-hide_banner", "-loglevel", "error", "-nostdin", "-y",
			"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
			"-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=44100",
			"-t", strconv.Itoa(seconds),
			"-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main", "-pix_fmt", "yuv420p",
			"-b:v", fmt.Sprintf("%dk", vk), "-maxrate", fmt.Sprintf("%dk", vk), "-bufsize", fmt.Sprintf("%dk", 2*vk),
			"-g", "60", "-keyint_min", "60", "-sc_threshold", "0", "-bf", "0",
			"-c:a", "aac", "-b:a", "64k", "-ar", "44100", "-ac", "1",
			"-f", "flv", tmp,
		}
		if out, err := exec.Command("ffmpeg", args...).CombinedOutput(); err != nil {
			os.Remove(tmp)
			return nil, fmt.Errorf("ffmpeg: %v: %s", err, out)
		}
		if err := os.Rename(tmp, path); err != nil {
			return nil, err
		}
	}
	return loadClip(path)
}

// syntheticClip builds FLV tags in Go: no real H.264, but realistic sizes
// and timing — 30 fps video with a keyframe every 2 s (keyframes 8x a
// delta frame), AAC-sized audio every 23 ms — at about kbps in total.
// Bodies are seeded random bytes, so corruption shows in the hashes.
func syntheticClip(kbps int, seconds int) *clip {
	rng := rand.New(rand.NewPCG(uint64(kbps), uint64(seconds)))
	fill := func(b []byte) {
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
	}
	c := &clip{Source: fmt.Sprintf("synthetic %d kbps (30 fps, keyframe every 2 s, 43 audio tags/s)", kbps)}
	// onMetaData: AMF0 "onMetaData" + an empty ECMA array.
	meta := []byte{0x02, 0x00, 0x0a, 'o', 'n', 'M', 'e', 't', 'a', 'D', 'a', 't', 'a', 0x08, 0, 0, 0, 0, 0, 0, 9}
	avcSeq := []byte{0x17, 0x00, 0, 0, 0, 0x01, 0x4d, 0x40, 0x1e, 0xff, 0xe1, 0x00, 0x04, 0x67, 0x4d, 0x40, 0x1e, 0x01, 0x00, 0x02, 0x68, 0xee}
	aacSeq := []byte{0xaf, 0x00, 0x12, 0x08}
	c.Init = []tag{{Type: flv.TypeScript, Body: meta}, {Type: flv.TypeVideo, Body: avcSeq}, {Type: flv.TypeAudio, Body: aacSeq}}

	const fps, gop = 30, 60
	audioBytes := 64000 / 8 * 1024 / 44100 // ~185 B per AAC frame at 64 kbps
	videoBps := (kbps - 64) * 1000 / 8
	if videoBps < 2000 {
		videoBps = 2000
	}
	// Per GOP: one keyframe of 8 units and gop-1 frames of 1 unit.
	unit := videoBps * gop / fps / (8 + gop - 1)
	frames := seconds * fps
	for i := 0; i < frames; i++ {
		key := i%gop == 0
		n := unit
		if key {
			n = 8 * unit
		}
		n += rng.IntN(unit/4+1) - unit/8
		if n < 16 {
			n = 16
		}
		b := make([]byte, 5+n)
		fill(b)
		if key {
			b[0] = 0x17
		} else {
			b[0] = 0x27
		}
		b[1], b[2], b[3], b[4] = 1, 0, 0, 0
		c.Media = append(c.Media, tag{Type: flv.TypeVideo, TS: uint32(i * 1000 / fps), Body: b, Key: key})
	}
	for t := 0.0; t < float64(seconds*1000); t += 1024 * 1000 / 44100.0 {
		b := make([]byte, 2+audioBytes)
		fill(b)
		b[0], b[1] = 0xaf, 0x01
		c.Media = append(c.Media, tag{Type: flv.TypeAudio, TS: uint32(t), Body: b})
	}
	sort.SliceStable(c.Media, func(i, j int) bool { return c.Media[i].TS < c.Media[j].TS })
	c.finish()
	return c
}
