package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/host"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
)

// TestSecretsStayOutOfLogs relays with a publish key, a repair token and a
// play key, publishes once with the key and once with a wrong one, and
// checks that no secret appears anywhere in the debug log.
func TestSecretsStayOutOfLogs(t *testing.T) {
	relayTest(t)
	const publishKey, token, playKey = "pub-5ecret-1", "rtx-5ecret-2", "play-5ecret-3"
	clip := testmedia.Clip(t, clipOpts)
	a := newAddrs(t)
	cloud := withParam(withParam(cloudTOML(a), "rtmp-source", "publish_key", publishKey), "quic-retransmit", "token", token)
	edge := withParam(withParam(edgeTOML("edge", a, "  drop = 0.05\n  seed = 5", ""), "rtp-reorder", "token", token), "httpflv-sink", "play_key", playKey)

	var logs testrun.LogBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := testrun.Start(t, "secrets.toml", cloud+edge, nil, testrun.Build(host.Options{Logger: log}))

	wrong := testmedia.Push(t, context.Background(), clip, "rtmp://"+a.RTMP+"/live/sec?key=nope-"+publishKey[:3], false)
	if err := wrong.Wait(); err == nil {
		t.Errorf("a publisher with a wrong key was accepted")
	}
	push := testmedia.Push(t, context.Background(), clip, fmt.Sprintf("rtmp://%s/live/sec?key=%s", a.RTMP, publishKey), true)
	url := "http://" + a.HTTP + "/live/sec.flv?key=" + playKey
	testrun.WaitPlayable(t, url, 5*time.Second)
	v := testrun.Watch(url)
	if err := push.Wait(); err != nil {
		t.Fatalf("push with the right key: %v\n%s", err, testmedia.Stderr(push))
	}
	if tags := mediaTags(v.Wait(t, 10*time.Second)); len(tags) == 0 {
		t.Fatal("viewer with the play key got nothing")
	}
	if repaired := r.RT.CounterSum("mediapipe_stage_repaired_packets_total", map[string]string{"stage": "rtp-reorder"}); repaired == 0 {
		t.Error("no repairs with the token: repair did not authenticate")
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, "live/sec") {
		t.Fatalf("log does not mention the stream; was it captured?\n%s", out)
	}
	for _, secret := range []string{publishKey, token, playKey} {
		if strings.Contains(out, secret) {
			t.Errorf("secret %q appears in the log", secret)
		}
	}
}
