package e2e

import (
	"bytes"
	"context"
	"net"
	"os"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/core/media/rtpann"
	"github.com/mediapipe/mediapipe/core/media/rtpflv"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// TestCloudFileOnTheWire runs the shipped pipelines/cloud.toml (ports moved
// by environment overrides, as an operator would) and reads the wire with a
// plain UDP socket: every tag ffmpeg pushed leaves as RTP in the contract's
// format, and SDES names the stream before its first RTP packet.
func TestCloudFileOnTheWire(t *testing.T) {
	testmedia.NeedFFmpeg(t)
	if testing.Short() {
		t.Skip("pushes real media")
	}
	clip := testmedia.Clip(t, clipOpts)
	want := testmedia.Tags(t, clip)

	rx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	_ = rx.SetReadBuffer(8 << 20)
	rtmp := testrun.FreeTCP(t)
	env := []string{
		"MEDIAPIPE_ADMIN_LISTEN=" + testrun.FreeTCP(t),
		"MEDIAPIPE_PIPELINE_CLOUD_STAGE_1_LISTEN=" + rtmp,
		"MEDIAPIPE_PIPELINE_CLOUD_STAGE_4_LISTEN=" + testrun.FreeUDP(t),
		"MEDIAPIPE_PIPELINE_CLOUD_STAGE_5_DESTINATIONS=" + rx.LocalAddr().String(),
	}
	data, err := os.ReadFile("../../pipelines/cloud.toml")
	if err != nil {
		t.Fatal(err)
	}
	testrun.Start(t, "pipelines/cloud.toml", string(data), env)

	push := testmedia.Push(t, context.Background(), clip, "rtmp://"+rtmp+"/live/wire", false)
	var (
		named   uint32
		got     [][]byte
		reasm   rtpflv.Reassembler
		ended   bool
		report  rtpann.Report
		payload = byte(100)
	)
	buf := make([]byte, 70000)
	for !ended {
		_ = rx.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := rx.Read(buf)
		if err != nil {
			t.Fatalf("wire went quiet after %d tags: %v", len(got), err)
		}
		pkt := buf[:n]
		switch rtpann.Classify(pkt) {
		case rtpann.RTCP:
			if err := rtpann.Parse(pkt, &report); err != nil {
				t.Fatalf("cloud sent RTCP that does not parse: %v", err)
			}
			for _, nm := range report.Names {
				if nm.Name == "live/wire" {
					named = nm.SSRC
				}
			}
			for _, bye := range report.Byes {
				if bye == named && named != 0 {
					ended = true
				}
			}
		case rtpann.RTP:
			if named == 0 || rtpann.SSRC(pkt) != named {
				t.Fatalf("RTP packet of SSRC %d before an SDES named it", rtpann.SSRC(pkt))
			}
			if rtpann.PayloadType(pkt) != payload {
				t.Fatalf("payload type %d, want %d", rtpann.PayloadType(pkt), payload)
			}
			if tag := reasm.Push(pkt); tag != nil {
				got = append(got, append([]byte(nil), tag...))
			}
		default:
			t.Fatalf("cloud sent a datagram that is neither RTP nor RTCP")
		}
	}
	if err := push.Wait(); err != nil {
		t.Fatalf("push: %v", err)
	}
	gotMedia, wantMedia := testmedia.MediaTags(got), testmedia.MediaTags(want)
	if len(gotMedia) != len(wantMedia) {
		t.Fatalf("%d media tags on the wire, ffmpeg pushed %d", len(gotMedia), len(wantMedia))
	}
	for i := range gotMedia {
		if !bytes.Equal(gotMedia[i], wantMedia[i]) {
			t.Fatalf("media tag %d on the wire differs from the clip's", i)
		}
	}
}
