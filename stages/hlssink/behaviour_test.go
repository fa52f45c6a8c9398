package hlssink_test

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/flv"
	"github.com/mediapipe/mediapipe/core/stagetest"
	"github.com/mediapipe/mediapipe/internal/testcert"
	"github.com/mediapipe/mediapipe/internal/testmedia"
	"github.com/mediapipe/mediapipe/internal/testrun"
	"github.com/mediapipe/mediapipe/stages/hlssink"
	"github.com/mediapipe/mediapipe/stages/internal/streaminfo"
)

// liveFeed starts feeding tags as stream name at real time; the feed stops
// (without an end event) when the test ends.
func liveFeed(t *testing.T, s *sink, name string, tags [][]byte) *core.Stream {
	t.Helper()
	st := s.h.StartStream(name)
	s.sync(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.feed(ctx, st, tags, 1)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return st
}

var (
	reSeq  = regexp.MustCompile(`#EXT-X-MEDIA-SEQUENCE:(\d+)`)
	reMap  = regexp.MustCompile(`#EXT-X-MAP:URI="([^"]+)"`)
	reURI  = regexp.MustCompile(`(?m)^[^#\s][^\s]*$`)
	rePart = regexp.MustCompile(`#EXT-X-PART:[^\n]*URI="([^"]+)"`)
)

// nextPart is the (msn, part) of the part after the last one a LL-HLS
// media playlist lists.
func nextPart(t testing.TB, pl string) (msn, part int) {
	t.Helper()
	m := reSeq.FindStringSubmatch(pl)
	if m == nil {
		t.Fatalf("no media sequence in\n%s", pl)
	}
	seq, _ := strconv.Atoi(m[1])
	segs := strings.Count(pl, "#EXTINF:")
	tail := pl
	if i := strings.LastIndex(pl, "#EXTINF:"); i >= 0 {
		tail = pl[i:]
	}
	return seq + segs, strings.Count(tail, "#EXT-X-PART:")
}

// TestLowLatencyPlaylist: the default variant's media playlist is LL-HLS
// (parts, server control with blocking reload, a preload hint), and a
// blocking reload for the next part returns once that part is listed.
func TestLowLatencyPlaylist(t *testing.T) {
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{Seconds: 8}))
	s := startSink(t, nil)
	liveFeed(t, s, "live/ll", tags)
	base := s.base + "/live/ll/"
	code, index := get(t, base+"index.m3u8")
	if code != 200 || !strings.Contains(index, "video1_stream.m3u8") {
		t.Fatalf("index: %d\n%s", code, index)
	}
	_, pl := get(t, base+"video1_stream.m3u8")
	for _, tag := range []string{"#EXT-X-PART:", "#EXT-X-PART-INF:PART-TARGET=", "#EXT-X-PRELOAD-HINT:", "#EXT-X-MAP:"} {
		if !strings.Contains(pl, tag) {
			t.Errorf("media playlist lacks %s:\n%s", tag, pl)
		}
	}
	if !regexp.MustCompile(`#EXT-X-SERVER-CONTROL:[^\n]*CAN-BLOCK-RELOAD=YES`).MatchString(pl) {
		t.Errorf("no EXT-X-SERVER-CONTROL with CAN-BLOCK-RELOAD=YES:\n%s", pl)
	}
	if strings.Contains(pl, "#EXT-X-ENDLIST") {
		t.Errorf("a live playlist ends:\n%s", pl)
	}
	// A part listed is served, as fMP4 (moof first).
	if m := rePart.FindStringSubmatch(pl); m == nil {
		t.Fatalf("no part URI in\n%s", pl)
	} else if code, body := get(t, base+m[1]); code != 200 || len(body) < 8 || body[4:8] != "moof" {
		t.Errorf("part %s: %d, %d bytes", m[1], code, len(body))
	}
	for i := 0; i < 3; i++ {
		msn, part := nextPart(t, pl)
		start := time.Now()
		code, next := get(t, base+"video1_stream.m3u8?_HLS_msn="+strconv.Itoa(msn)+"&_HLS_part="+strconv.Itoa(part))
		took := time.Since(start)
		if code != 200 {
			t.Fatalf("blocking reload for %d.%d: %d %s", msn, part, code, next)
		}
		gotMSN, gotPart := nextPart(t, next)
		if gotMSN < msn || (gotMSN == msn && gotPart <= part) {
			t.Fatalf("blocking reload for %d.%d answered before that part (next is %d.%d):\n%s", msn, part, gotMSN, gotPart, next)
		}
		if took > 3*time.Second {
			t.Errorf("blocking reload took %v for a %v part", took, 200*time.Millisecond)
		}
		t.Logf("reload for %d.%d took %v", msn, part, took.Round(time.Millisecond))
		pl = next
	}
	// A part far ahead is refused at once rather than held.
	msn, _ := nextPart(t, pl)
	if code, _ := get(t, base+"video1_stream.m3u8?_HLS_msn="+strconv.Itoa(msn+10)+"&_HLS_part=0"); code != http.StatusBadRequest {
		t.Errorf("reload far ahead: %d, want 400", code)
	}
}

// TestEndAndRestart: a stream's end turns its playlists final (ENDLIST);
// a new stream under the same name then gets a fresh playlist at the same
// URL, which a poller sees, and it plays the new stream's pictures.
func TestEndAndRestart(t *testing.T) {
	first := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{Seconds: 3}))
	secondClip := testmedia.Clip(t, testmedia.Options{Seconds: 3, Width: 160, Height: 96})
	second := testmedia.Tags(t, secondClip)
	s := startSink(t, map[string]any{"variant": "fmp4"})
	st := s.h.StartStream("live/again")
	s.feedAll(t, st, first)
	media := s.base + "/live/again/video1_stream.m3u8"
	_, pl1 := get(t, media)
	if strings.Contains(pl1, "#EXT-X-ENDLIST") {
		t.Fatalf("live playlist already ended:\n%s", pl1)
	}
	s.h.EndStream(st)
	var ended string
	testrun.Eventually(t, testrun.WaitLimit, "ENDLIST after the end", func() bool {
		_, ended = get(t, media)
		return strings.Contains(ended, "#EXT-X-ENDLIST")
	})
	if strings.Contains(ended, "#EXT-X-PRELOAD-HINT") {
		t.Errorf("ended playlist still hints at a part:\n%s", ended)
	}
	// Its segments stay served for players catching up.
	for _, u := range reURI.FindAllString(ended, -1) {
		if code, _ := get(t, s.base+"/live/again/"+u); code != 200 {
			t.Errorf("segment %s of the ended stream: %d", u, code)
		}
	}
	map1 := reMap.FindStringSubmatch(ended)

	st2 := s.h.StartStream("live/again")
	s.feedAll(t, st2, second)
	var pl2 string
	testrun.Eventually(t, testrun.WaitLimit, "the poller to see the new stream", func() bool {
		_, pl2 = get(t, media)
		m := reMap.FindStringSubmatch(pl2)
		return !strings.Contains(pl2, "#EXT-X-ENDLIST") && m != nil && map1 != nil && m[1] != map1[1]
	})
	if _, index := get(t, s.base+"/live/again/index.m3u8"); !strings.Contains(index, "RESOLUTION=160x96") {
		t.Errorf("index after the restart is not the new stream's:\n%s", index)
	}
	s.h.EndStream(st2)
	want := decodedVideo(t, secondClip)
	got := decodedVideo(t, s.base+"/live/again/index.m3u8")
	if at := joinedRun(t, got, want, 30); at+len(got) != len(want) {
		t.Errorf("new stream played %d..%d of %d", at, at+len(got), len(want))
	}
}

// TestPlayKey: with play_key, playlists, segments and parts need the key;
// the playlists carry it on into every URI, so a player that has the
// playlist URL plays; a reloaded key replaces the old one.
func TestPlayKey(t *testing.T) {
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{Seconds: 3}))
	s := startSink(t, map[string]any{"play_key": "s3cret"})
	st := s.h.StartStream("live/k")
	s.feedAll(t, st, tags)
	base := s.base + "/live/k/"
	if code, _ := get(t, base+"index.m3u8"); code != http.StatusUnauthorized {
		t.Errorf("no key: %d, want 401", code)
	}
	if code, _ := get(t, base+"index.m3u8?key=wrong"); code != http.StatusForbidden {
		t.Errorf("wrong key: %d, want 403", code)
	}
	checkKeyed := func(when string) {
		t.Helper()
		code, index := get(t, base+"index.m3u8?key=s3cret")
		if code != 200 {
			t.Fatalf("%s: right key: %d", when, code)
		}
		mediaURI := reURI.FindString(index)
		if !strings.HasSuffix(mediaURI, "?key=s3cret") {
			t.Fatalf("%s: index does not carry the key on: %q\n%s", when, mediaURI, index)
		}
		_, pl := get(t, base+mediaURI)
		uris := append(reURI.FindAllString(pl, -1), reMap.FindStringSubmatch(pl)[1])
		for _, m := range rePart.FindAllStringSubmatch(pl, -1) {
			uris = append(uris, m[1])
		}
		if len(uris) < 3 {
			t.Fatalf("%s: too few URIs in\n%s", when, pl)
		}
		for _, u := range uris {
			if strings.HasPrefix(u, "gap") {
				continue
			}
			if !strings.HasSuffix(u, "?key=s3cret") {
				t.Errorf("%s: URI without the key: %s", when, u)
				continue
			}
			if code, _ := get(t, base+u); code != 200 {
				t.Errorf("%s: %s: %d", when, u, code)
			}
			bare, _, _ := strings.Cut(u, "?")
			if code, _ := get(t, base+bare); code != http.StatusUnauthorized {
				t.Errorf("%s: %s without the key: %d, want 401", when, bare, code)
			}
		}
	}
	checkKeyed("live")
	s.h.EndStream(st)
	testrun.Eventually(t, testrun.WaitLimit, "the stream to end", func() bool {
		_, pl := get(t, base+"video1_stream.m3u8?key=s3cret")
		return strings.Contains(pl, "#EXT-X-ENDLIST")
	})
	checkKeyed("ended")

	var cfg hlssink.Config
	stagetest.Decode(t, "hls-sink", map[string]any{"listen": "127.0.0.1:0", "play_key": "new"}, &cfg)
	if err := s.stage.Reconfigure(&cfg); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, base+"index.m3u8?key=s3cret"); code != http.StatusForbidden {
		t.Errorf("old key after reload: %d, want 403", code)
	}
	if code, _ := get(t, base+"index.m3u8?key=new"); code != 200 {
		t.Errorf("new key after reload: %d", code)
	}
}

// TestHTTPS: with cert and key the sink serves HTTPS with HTTP/2, and a
// renewed certificate is served to new connections without a restart.
func TestHTTPS(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.NewCA(t)
	pair := ca.Issue(t, dir, "server")
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{Seconds: 3}))
	s := startSink(t, map[string]any{"cert": pair.CertFile, "key": pair.KeyFile})
	st := s.h.StartStream("live/tls")
	s.feedAll(t, st, tags)
	fetch := func() (*http.Response, string) {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pair.Pool},
			ForceAttemptHTTP2: true,
		}}
		defer c.CloseIdleConnections()
		resp, err := c.Get(s.base + "/live/tls/index.m3u8")
		if err != nil {
			t.Fatalf("GET over TLS: %v", err)
		}
		defer resp.Body.Close()
		b := make([]byte, 4096)
		n, _ := resp.Body.Read(b)
		return resp, string(b[:n])
	}
	resp, body := fetch()
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "#EXTM3U") {
		t.Fatalf("index over TLS: %d %q", resp.StatusCode, body)
	}
	if resp.Proto != "HTTP/2.0" {
		t.Errorf("protocol %s, want HTTP/2.0", resp.Proto)
	}
	if got := resp.TLS.PeerCertificates[0].SerialNumber; got.Cmp(pair.Serial) != 0 {
		t.Fatalf("served serial %v, want %v", got, pair.Serial)
	}
	renewed := ca.Issue(t, dir, "server")
	testrun.Eventually(t, testrun.WaitLimit, "the renewed certificate to be served", func() bool {
		resp, _ := fetch()
		return resp.TLS.PeerCertificates[0].SerialNumber.Cmp(renewed.Serial) == 0
	})
	// ffmpeg plays it too.
	s.h.EndStream(st)
	testrun.Eventually(t, testrun.WaitLimit, "the stream to end", func() bool {
		_, pl := fetch()
		return pl != "" // index of the ended stream is still served
	})
	if got := decodedVideo(t, s.base+"/live/tls/index.m3u8", "-tls_verify", "0"); len(got) < 30 {
		t.Errorf("ffmpeg over HTTPS played %d pictures", len(got))
	}
}

// TestJunk: garbage tags and a stream without keyframes neither crash the
// sink nor stop it serving other streams, and they are counted.
func TestJunk(t *testing.T) {
	t.Parallel()
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{Seconds: 3}))
	s := startSink(t, nil)
	junk := s.h.StartStream("live/junk")
	bad := [][]byte{
		{1, 2, 3},
		flv.AppendTag(nil, flv.TypeVideo, 0, nil),
		flv.AppendTag(nil, flv.TypeVideo, 0, []byte{0x17, 0}),                         // short AVC header
		flv.AppendTag(nil, flv.TypeVideo, 0, []byte{0x17, 0, 0, 0, 0, 1, 2, 3}),       // bad avcC
		flv.AppendTag(nil, flv.TypeAudio, 0, []byte{0xaf}),                            // short AAC
		flv.AppendTag(nil, flv.TypeAudio, 0, []byte{0xaf, 0, 0xff}),                   // bad ASC
		flv.AppendTag(nil, 7, 0, []byte{1, 2, 3}),                                     // unknown type
		flv.AppendTag(nil, flv.TypeVideo, 0, []byte{0x27, 1, 0, 0, 0, 0, 0, 0, 9, 1}), // frame before any SH
	}
	for _, tag := range bad {
		p := core.NewPacket(len(tag))
		copy(p.Data, tag)
		p.Stream, p.Type = junk, flv.TypeVideo
		s.h.Send(p)
	}
	// A stream with sequence headers but no keyframe: its frames are
	// dropped until one comes, and NAL lengths beyond the tag are refused.
	media := testmedia.MediaTags(tags)
	nokey := s.h.StartStream("live/nokey")
	for _, tag := range media {
		body := tag[flv.HeaderSize:]
		if tag[0]&0x1f == flv.TypeVideo && body[0]>>4 == flv.FrameKey && body[1] == flv.AVCNALU {
			continue
		}
		s.send(nokey, tag)
	}
	lying := append([]byte(nil), media[0]...)
	for _, tag := range media {
		if tag[0]&0x1f == flv.TypeVideo && tag[flv.HeaderSize+1] == flv.AVCNALU {
			lying = append([]byte(nil), tag...)
			break
		}
	}
	lying[flv.HeaderSize+5] = 0x7f // first NAL length now far beyond the tag
	s.send(nokey, lying)
	good := s.h.StartStream("live/good")
	s.feedAll(t, good, tags)
	if code, pl := get(t, s.base+"/live/good/index.m3u8"); code != 200 || !strings.HasPrefix(pl, "#EXTM3U") {
		t.Fatalf("a good stream after junk: %d %q", code, pl)
	}
	if n := s.drops("bad_tag"); n < float64(len(bad)-1) {
		t.Errorf("bad_tag = %v, want at least %d", n, len(bad)-1)
	}
	if n := s.drops("no_keyframe"); n < 30 {
		t.Errorf("no_keyframe = %v, want the stream's frames", n)
	}
	// The keyless stream has no playlist to give (yet): refused, not hung.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/live/nokey/index.m3u8", nil)
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("keyless stream's playlist: %d, want 503", resp.StatusCode)
	}
}

// TestRoutes: CORS, OPTIONS, methods, and what is not a media path.
func TestRoutes(t *testing.T) {
	s := startSink(t, map[string]any{"page": false})
	req, _ := http.NewRequest(http.MethodOptions, s.base+"/live/x/index.m3u8", nil)
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("OPTIONS: %d, CORS %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	resp, err = httpc.Post(s.base+"/live/x/index.m3u8", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", resp.StatusCode)
	}
	for _, path := range []string{"/", "/live/x", "/live/x/index.m3u8", "/x.m3u8", "/live/../x/index.m3u8", "/live//index.m3u8"} {
		resp, err := httpc.Get(s.base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("GET %s with page = false: %d", path, resp.StatusCode)
		}
	}
}

// TestStreamsAndViewers: the page's stream list shows a live stream with
// its codecs, size and the players polling it, and leaves ended ones out.
func TestStreamsAndViewers(t *testing.T) {
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{Seconds: 3}))
	s := startSink(t, map[string]any{"variant": "fmp4"})
	st := s.h.StartStream("live/list")
	s.feedAll(t, st, tags)
	for i := 0; i < 3; i++ { // three players: three connections
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
		for j := 0; j < 2; j++ { // polling twice on its connection
			resp, err := c.Get(s.base + "/live/list/video1_stream.m3u8")
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		c.CloseIdleConnections()
	}
	var list []streaminfo.Info
	for _, in := range s.stage.Streams() {
		if strings.HasPrefix(in.Name, "live/") {
			list = append(list, in)
		}
	}
	if len(list) != 1 {
		t.Fatalf("streams: %+v", list)
	}
	in := list[0]
	if in.Name != "live/list" || in.Viewers != 3 || in.Width != 320 || in.Height != 180 ||
		!strings.HasPrefix(in.Video, "H264") || !strings.HasPrefix(in.Audio, "AAC") {
		t.Errorf("stream info: %+v", in)
	}
	s.h.EndStream(st)
	testrun.Eventually(t, testrun.WaitLimit, "the ended stream to leave the list", func() bool {
		for _, in := range s.stage.Streams() {
			if in.Name == "live/list" {
				return false
			}
		}
		return true
	})
}

// TestMaxStreams: a stream beyond max_streams is not served and counted;
// an ended stream still served gives its place to a new one.
func TestMaxStreams(t *testing.T) {
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{Seconds: 3}))
	s := startSink(t, map[string]any{"variant": "fmp4", "max_streams": 1})
	a := s.h.StartStream("live/a")
	s.feed(context.Background(), a, tags, 0)
	b := s.h.StartStream("live/b")
	s.feed(context.Background(), b, tags, 0)
	testrun.Eventually(t, testrun.WaitLimit, "the second stream to be refused", func() bool { return s.drops("too_many_streams") == 1 })
	if code, _ := get(t, s.base+"/live/a/index.m3u8"); code != 200 {
		t.Errorf("first stream: %d", code)
	}
	if code, _ := get(t, s.base+"/live/b/index.m3u8"); code != http.StatusNotFound {
		t.Errorf("stream beyond max_streams: %d, want 404", code)
	}
	s.h.EndStream(a)
	s.h.EndStream(b)
	c := s.h.StartStream("live/c")
	s.feed(context.Background(), c, tags, 0)
	testrun.Eventually(t, testrun.WaitLimit, "the stream after the first ended to be served", func() bool {
		code, _ := get(t, s.base+"/live/c/index.m3u8")
		return code == 200
	})
	if code, _ := get(t, s.base+"/live/a/video1_stream.m3u8"); code != http.StatusNotFound {
		t.Errorf("the ended stream that gave its place: %d, want 404", code)
	}
}

// TestShutdownEndsWaiting: requests gohlslib holds (a blocking reload, a
// preload hint) and requests waiting for a stream's first segment end when
// the sink stops, and so does every goroutine it started.
func TestShutdownEndsWaiting(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{Seconds: 3}))
	s := startSink(t, nil)
	st := s.h.StartStream("live/held")
	// the first two seconds: a segment, and the stream stays live
	var head [][]byte
	for _, tag := range tags {
		if hdr, _ := flv.ParseHeader(tag); hdr.Timestamp < 2000 {
			head = append(head, tag)
		}
	}
	s.feedAll(t, st, head)
	s.h.StartStream("live/empty") // never gets media
	_, pl := get(t, s.base+"/live/held/video1_stream.m3u8")
	msn, part := nextPart(t, pl)
	hint := regexp.MustCompile(`#EXT-X-PRELOAD-HINT:[^\n]*URI="([^"]+)"`).FindStringSubmatch(pl)
	if hint == nil {
		t.Fatalf("no preload hint in\n%s", pl)
	}
	tr := &http.Transport{}
	c := &http.Client{Timeout: 20 * time.Second, Transport: tr}
	reload := s.base + "/live/held/video1_stream.m3u8?_HLS_msn=" + strconv.Itoa(msn) + "&_HLS_part=" + strconv.Itoa(part+1)
	// Two of each on one muxer: gohlslib before v2.4.2 kept the muxer's
	// lock when a closing muxer ended one preload-hint request, so every
	// other request held on it (and Run, waiting for them) hung for good.
	urls := []string{
		reload, reload,
		s.base + "/live/held/" + hint[1], s.base + "/live/held/" + hint[1],
		s.base + "/live/empty/index.m3u8",
	}
	done := make(chan string, len(urls))
	for _, u := range urls {
		go func() {
			resp, err := c.Get(u)
			if err != nil {
				done <- "error"
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			done <- resp.Status
		}()
	}
	time.Sleep(300 * time.Millisecond) // let them reach the sink and wait there
	select {
	case r := <-done:
		t.Fatalf("a request that should wait was answered: %s", r)
	default:
	}
	start := time.Now()
	if err := s.h.Close(); err != nil {
		t.Fatal(err)
	}
	for range urls {
		testrun.Within(t, done, 5*time.Second, "a waiting request to end")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("stopping with requests waiting took %v", d)
	}
	tr.CloseIdleConnections()
}

// TestInitTagsOfALateEdge: a stream whose sequence headers came as stream
// metadata (an edge that joined late) and not in band plays all the same.
func TestInitTagsOfALateEdge(t *testing.T) {
	clip := testmedia.Clip(t, testmedia.Options{Seconds: 3})
	tags := testmedia.Tags(t, clip)
	init := &core.InitTags{}
	var media [][]byte
	for _, tag := range tags {
		switch kind := flv.InitKindOf(tag[0]&0x1f, tag[flv.HeaderSize:]); {
		case kind == flv.InitVideo && init.Video == nil:
			init.Video = tag
		case kind == flv.InitAudio && init.Audio == nil:
			init.Audio = tag
		case tag[0]&0x1f == flv.TypeScript:
			init.Metadata = tag
		case kind == flv.InitNone:
			media = append(media, tag)
		}
	}
	if init.Video == nil || init.Audio == nil {
		t.Fatal("the clip has no sequence headers")
	}
	s := startSink(t, map[string]any{"variant": "mpegts"})
	st := core.NewStream("live/late")
	st.SetInit(init)
	s.h.Send(core.NewEvent(core.EventStart, st))
	s.feedAll(t, st, media)
	s.h.EndStream(st)
	want := decodedVideo(t, clip)
	got := decodedVideo(t, s.base+"/live/late/index.m3u8")
	if at := joinedRun(t, got, want, 30); at+len(got) != len(want) {
		t.Errorf("played %d..%d of %d", at, at+len(got), len(want))
	}
	if n := s.drops("no_sequence_header"); n != 0 {
		t.Errorf("no_sequence_header = %v with the init tags given", n)
	}
}

// TestTakeover: a new publisher under a live stream's name takes the URL
// over; what the old one still sends, and its end, touch the new one not.
func TestTakeover(t *testing.T) {
	tags := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{Seconds: 6}))
	s := startSink(t, map[string]any{"variant": "fmp4"})
	old := s.h.StartStream("live/take")
	s.feedAll(t, old, tags[:len(tags)/2])
	_, before := get(t, s.base+"/live/take/video1_stream.m3u8")
	newer := s.h.StartStream("live/take")
	s.feedAll(t, newer, tags)
	s.feedAll(t, old, tags[len(tags)/2:])
	s.h.EndStream(old)
	s.sync(t)
	_, after := get(t, s.base+"/live/take/video1_stream.m3u8")
	if strings.Contains(after, "#EXT-X-ENDLIST") {
		t.Errorf("the old stream's end ended the new one:\n%s", after)
	}
	if m1, m2 := reMap.FindStringSubmatch(before), reMap.FindStringSubmatch(after); m1 == nil || m2 == nil || m1[1] == m2[1] {
		t.Errorf("the URL still serves the old stream's playlist:\n%s", after)
	}
	s.h.EndStream(newer)
	testrun.Eventually(t, testrun.WaitLimit, "the new stream's end", func() bool {
		_, pl := get(t, s.base+"/live/take/video1_stream.m3u8")
		return strings.Contains(pl, "#EXT-X-ENDLIST")
	})
}

// TestPageRoutes: with page on (the default), what is not a media path is
// the player page's, not the sink's 404.
func TestPageRoutes(t *testing.T) {
	s := startSink(t, nil)
	for _, path := range []string{"/", "/live/x"} {
		_, body := get(t, s.base+path)
		if strings.Contains(body, "streams are at /APP/KEY/index.m3u8") {
			t.Errorf("GET %s with page = true: the sink answered, not the page", path)
		}
	}
}

// TestStartsAtFirstKeyframe: a stream that starts without a keyframe is
// served from its first keyframe on, the frames before it counted.
func TestStartsAtFirstKeyframe(t *testing.T) {
	clip := testmedia.Clip(t, testmedia.Options{Seconds: 3})
	tags := testmedia.Tags(t, clip)
	var cut [][]byte
	skipped := false
	for _, tag := range tags {
		body := tag[flv.HeaderSize:]
		if !skipped && tag[0]&0x1f == flv.TypeVideo && body[0]>>4 == flv.FrameKey && body[1] == flv.AVCNALU {
			skipped = true // the first keyframe is lost: the join starts mid-GOP
			continue
		}
		cut = append(cut, tag)
	}
	s := startSink(t, map[string]any{"variant": "mpegts"})
	st := s.h.StartStream("live/midgop")
	s.feedAll(t, st, cut)
	s.h.EndStream(st)
	want := decodedVideo(t, clip)
	got := decodedVideo(t, s.base+"/live/midgop/index.m3u8")
	if at := joinedRun(t, got, want, 30); at != 30 || at+len(got) != len(want) {
		t.Errorf("played %d..%d of %d, want 30..%d (from the second keyframe)", at, at+len(got), len(want), len(want))
	}
	if n := s.drops("no_keyframe"); n != 29 {
		t.Errorf("no_keyframe = %v, want the 29 frames of the first GOP", n)
	}
}

// TestNewSequenceHeader: new codec parameters mid-stream (the publisher
// changed resolution) start a new muxer: the playlist is the new one's.
func TestNewSequenceHeader(t *testing.T) {
	first := testmedia.Tags(t, testmedia.Clip(t, testmedia.Options{Seconds: 3}))
	secondClip := testmedia.Clip(t, testmedia.Options{Seconds: 3, Width: 160, Height: 96})
	second := testmedia.Tags(t, secondClip)
	s := startSink(t, map[string]any{"variant": "mpegts"})
	st := s.h.StartStream("live/resize")
	s.feedAll(t, st, first)
	if _, index := get(t, s.base+"/live/resize/index.m3u8"); !strings.Contains(index, "RESOLUTION=320x180") {
		t.Fatalf("index before:\n%s", index)
	}
	s.feedAll(t, st, second)
	if n := core.CounterValue(s.env.Metrics.Counter("muxer_restarts")); n != 1 {
		t.Errorf("muxer_restarts = %v, want 1", n)
	}
	if _, index := get(t, s.base+"/live/resize/index.m3u8"); !strings.Contains(index, "RESOLUTION=160x96") {
		t.Errorf("index after the new sequence header:\n%s", index)
	}
	s.h.EndStream(st)
	want := decodedVideo(t, secondClip)
	got := decodedVideo(t, s.base+"/live/resize/index.m3u8")
	if at := joinedRun(t, got, want, 30); at+len(got) != len(want) {
		t.Errorf("played %d..%d of %d of the new clip", at, at+len(got), len(want))
	}
}
