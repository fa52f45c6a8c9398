package testmedia

import (
	"testing"

	"github.com/mediapipe/mediapipe/core/media/flv"
)

func TestClip(t *testing.T) {
	path := Clip(t, Options{})
	tags := Tags(t, path)
	var video, audio, keys int
	for _, tag := range tags {
		switch tag[0] {
		case flv.TypeVideo:
			video++
			if v, ok := flv.ParseVideo(tag[flv.HeaderSize:]); ok && v.FrameType == flv.FrameKey && v.PacketType == flv.AVCNALU {
				keys++
			}
		case flv.TypeAudio:
			audio++
		}
	}
	// 5 s at 30 fps: 150 frames + sequence header + the AVC end-of-sequence
	// tag ffmpeg's muxer writes last; a keyframe every 30 frames.
	if video != 152 || keys != 5 || audio < 200 {
		t.Fatalf("clip has %d video tags (%d keyframes), %d audio tags; want 152 (5), >200", video, keys, audio)
	}
	frames := FrameMD5(t, path)
	t.Logf("%d frames, first %v, last %v", len(frames), frames[0], frames[len(frames)-1])
	if want := video - 2 + audio - 1; len(frames) != want {
		t.Fatalf("framemd5 gives %d packets, want %d", len(frames), want)
	}
	if again := Clip(t, Options{}); again != path {
		t.Fatalf("clip not cached: %s then %s", path, again)
	}
}
