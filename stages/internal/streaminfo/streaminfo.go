// Package streaminfo follows what a viewer page lists of a live FLV stream:
// its codecs, picture size and bitrate, read from the tags a sink serves.
package streaminfo

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/media/h264"
)

// Info is one live stream as the stream list shows it.
type Info struct {
	Name        string    `json:"name"`            // APP/KEY
	Video       string    `json:"video,omitempty"` // "H264 High 4.0", "H265"
	Audio       string    `json:"audio,omitempty"` // "AAC 44100 Hz stereo"
	Width       int       `json:"width,omitempty"`
	Height      int       `json:"height,omitempty"`
	BitrateKbps int       `json:"bitrate_kbps"` // over the last few seconds
	Viewers     int       `json:"viewers"`
	Since       time.Time `json:"since"` // when the stream started here
	// UptimeSeconds is Since to now, for pages that do not keep clocks in step.
	UptimeSeconds float64 `json:"uptime_seconds"`
}

// window is how long a bitrate is averaged over.
const window = 2 * time.Second

// Tracker reads a stream's tags. Observe is called by the stage's Run
// goroutine only; Snapshot by HTTP handlers. Per tag it costs two atomic
// adds and loads: the lock is taken only when a new sequence header
// changes what the list shows.
type Tracker struct {
	mu   sync.Mutex
	info Info // Video, Audio, Width, Height under mu; the rest fixed

	winStart    atomic.Int64 // UnixNano the bitrate window began
	winBytes    atomic.Int64
	bitrateKbps atomic.Int64

	lastVideoSH []byte // Observe's own: the sequence header last parsed, to skip repeats
	lastAudioSH []byte
}

// New starts following the stream name from now.
func New(name string, now time.Time) *Tracker {
	t := &Tracker{info: Info{Name: name, Since: now}}
	t.winStart.Store(now.UnixNano())
	return t
}

// Observe reads one FLV tag (11-byte header and body); only sequence
// headers are parsed.
func (t *Tracker) Observe(tag []byte, now time.Time) {
	if len(tag) < flv.HeaderSize+2 {
		return
	}
	typ, body := tag[0]&0x1f, tag[flv.HeaderSize:]
	n := t.winBytes.Add(int64(len(tag)))
	if d := now.UnixNano() - t.winStart.Load(); d >= int64(window) {
		t.bitrateKbps.Store(n * 8 * int64(time.Millisecond) / d)
		t.winStart.Store(now.UnixNano())
		t.winBytes.Store(0)
	}
	switch typ {
	case flv.TypeVideo:
		v, ok := flv.ParseVideo(body)
		if !ok || !v.IsSequenceHeader() || string(body) == string(t.lastVideoSH) {
			return
		}
		t.lastVideoSH = append(t.lastVideoSH[:0], body...)
		video, w, h := describeVideo(v, body)
		t.mu.Lock()
		t.info.Video, t.info.Width, t.info.Height = video, w, h
		t.mu.Unlock()
	case flv.TypeAudio:
		a, ok := flv.ParseAudio(body)
		if !ok || !a.IsSequenceHeader() || string(body) == string(t.lastAudioSH) {
			return
		}
		t.lastAudioSH = append(t.lastAudioSH[:0], body...)
		audio := describeAAC(body[2:])
		t.mu.Lock()
		t.info.Audio = audio
		t.mu.Unlock()
	}
}

// Snapshot is the stream's Info now; the caller fills in Viewers.
func (t *Tracker) Snapshot(now time.Time) Info {
	t.mu.Lock()
	in := t.info
	t.mu.Unlock()
	in.UptimeSeconds = now.Sub(in.Since).Seconds()
	in.BitrateKbps = int(t.bitrateKbps.Load())
	if now.UnixNano()-t.winStart.Load() > int64(2*window) { // no tags for a while: nothing flows
		in.BitrateKbps = 0
	}
	return in
}

func describeVideo(v flv.VideoInfo, body []byte) (name string, w, h int) {
	switch v.Codec {
	case flv.CodecHEVC:
		return "H265", 0, 0
	case flv.CodecAVC:
	default:
		return fmt.Sprintf("codec %d", v.Codec), 0, 0
	}
	if len(body) < 5 {
		return "H264", 0, 0
	}
	sps, _, err := h264.ConfigSize(body[5:])
	if err != nil {
		return "H264", 0, 0
	}
	return fmt.Sprintf("H264 %s %d.%d", profileName(sps.Profile), sps.Level/10, sps.Level%10), sps.Width, sps.Height
}

func profileName(p uint8) string {
	switch p {
	case 66:
		return "Baseline"
	case 77:
		return "Main"
	case 88:
		return "Extended"
	case 100:
		return "High"
	case 110:
		return "High 10"
	case 122:
		return "High 4:2:2"
	case 244:
		return "High 4:4:4"
	}
	return fmt.Sprintf("profile %d", p)
}

var aacRates = [...]int{96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350}

// describeAAC reads an AudioSpecificConfig's rate and channels.
func describeAAC(asc []byte) string {
	if len(asc) < 2 {
		return "AAC"
	}
	rateIdx := int(asc[0]&0x07)<<1 | int(asc[1]>>7)
	channels := int(asc[1]>>3) & 0x0f
	rate := 0
	if rateIdx < len(aacRates) {
		rate = aacRates[rateIdx]
	}
	layout := fmt.Sprintf("%d ch", channels)
	switch channels {
	case 1:
		layout = "mono"
	case 2:
		layout = "stereo"
	}
	if rate == 0 {
		return "AAC " + layout
	}
	return fmt.Sprintf("AAC %d Hz %s", rate, layout)
}
