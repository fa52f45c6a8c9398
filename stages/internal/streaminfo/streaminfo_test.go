package streaminfo

import (
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/internal/testmedia"
)

func TestReadsCodecsSizeAndBitrate(t *testing.T) {
	testmedia.NeedFFmpeg(t)
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{}))
	start := time.Unix(1000, 0)
	tr := New("live/x", start)
	var bytes int
	var last uint32
	for _, tag := range tags {
		h, err := flv.ParseHeader(tag)
		if err != nil {
			t.Fatal(err)
		}
		tr.Observe(tag, start.Add(time.Duration(h.Timestamp)*time.Millisecond))
		bytes += len(tag)
		last = h.Timestamp
	}
	in := tr.Snapshot(start.Add(time.Duration(last) * time.Millisecond))
	if in.Name != "live/x" || in.Width == 0 || in.Height == 0 {
		t.Fatalf("info %+v: no size", in)
	}
	if in.Video == "" || in.Video[:4] != "H264" {
		t.Errorf("video %q, want H264 …", in.Video)
	}
	if in.Audio == "" || in.Audio[:3] != "AAC" {
		t.Errorf("audio %q, want AAC …", in.Audio)
	}
	avg := float64(bytes*8) / float64(last) // kbit/s over the clip
	if in.BitrateKbps <= 0 || float64(in.BitrateKbps) < avg/3 || float64(in.BitrateKbps) > avg*3 {
		t.Errorf("bitrate %d kbps, clip averages %.0f", in.BitrateKbps, avg)
	}
	if in.UptimeSeconds <= 0 {
		t.Errorf("uptime %v", in.UptimeSeconds)
	}
}
