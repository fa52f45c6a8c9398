package httpflvsink_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
	"github.com/mediapipe/mediapipe/stages/httpflvsink"
	"github.com/mediapipe/mediapipe/stages/internal/streaminfo"
)

func getStatus(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := httpc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func streamsJSON(t *testing.T, url string) []streaminfo.Info {
	t.Helper()
	code, body := getStatus(t, url)
	if code != 200 {
		t.Fatalf("%s: status %d: %s", url, code, body)
	}
	var list struct{ Streams []streaminfo.Info }
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	return list.Streams
}

// TestPageListsStreams: with page on, the list shows the live stream with
// what its tags say (codec, size) and its viewers, "/" and "/APP/KEY" are
// pages, and the media URL is untouched.
func TestPageListsStreams(t *testing.T) {
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{Seconds: 1, Width: 320, Height: 180}))
	s := startSink(t, httpflvsink.Config{GOPCache: true, Page: true})
	if got := streamsJSON(t, s.base+"/.mediapipe/streams.json"); len(got) != 0 {
		t.Fatalf("no stream yet, list says %+v", got)
	}
	st := s.h.StartStream("live/page")
	for _, tag := range tags {
		s.send(st, tag)
	}
	testrun.Eventually(t, testrun.WaitLimit, "stream", func() bool { return testrun.Head(s.base+"/live/page.flv") == 200 })
	resp, err := httpc.Get(s.base + "/live/page.flv")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "video/x-flv" {
		t.Fatalf("media: status %d, %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var info streaminfo.Info
	testrun.Eventually(t, testrun.WaitLimit, "the stream listed with its codec, size and viewer", func() bool {
		list := streamsJSON(t, s.base+"/.mediapipe/streams.json")
		if len(list) != 1 {
			return false
		}
		info = list[0]
		return info.Name == "live/page" && info.Width == 320 && info.Height == 180 &&
			strings.HasPrefix(info.Video, "H264 Main") && strings.HasPrefix(info.Audio, "AAC") && info.Viewers == 1
	})
	if code, body := getStatus(t, s.base+"/"); code != 200 || !strings.Contains(body, "Live streams") {
		t.Fatalf("/: %d\n%s", code, body)
	}
	if code, body := getStatus(t, s.base+"/live/page"); code != 200 || !strings.Contains(body, "/.mediapipe/mpegts.js") {
		t.Fatalf("/live/page: %d\n%s", code, body)
	}
	if code, _ := getStatus(t, s.base+"/.mediapipe/mpegts.js"); code != 200 {
		t.Fatalf("mpegts.js: %d", code)
	}
}

// TestPageKeyAndOff: the pages ask for play_key as the media does; page =
// false leaves only the media URLs.
func TestPageKeyAndOff(t *testing.T) {
	s := startSink(t, httpflvsink.Config{Page: true, PlayKey: "k1"})
	s.h.StartStream("live/k")
	for url, want := range map[string]int{
		"/":                               http.StatusUnauthorized,
		"/?key=bad":                       http.StatusForbidden,
		"/?key=k1":                        http.StatusOK,
		"/.mediapipe/streams.json":        http.StatusUnauthorized,
		"/.mediapipe/streams.json?key=no": http.StatusForbidden,
		"/live/k?key=bad":                 http.StatusForbidden,
	} {
		if code, _ := getStatus(t, s.base+url); code != want {
			t.Errorf("%s: status %d, want %d", url, code, want)
		}
	}
	testrun.Eventually(t, testrun.WaitLimit, "the stream listed for the key", func() bool {
		return len(streamsJSON(t, s.base+"/.mediapipe/streams.json?key=k1")) == 1
	})

	off := startSink(t, httpflvsink.Config{})
	for _, url := range []string{"/", "/live/k", "/.mediapipe/streams.json"} {
		if code, _ := getStatus(t, off.base+url); code != http.StatusNotFound {
			t.Errorf("page off: %s: status %d, want 404", url, code)
		}
	}
}
