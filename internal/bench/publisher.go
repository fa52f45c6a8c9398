package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	rtmp "github.com/yutopp/go-rtmp"
	rtmpmsg "github.com/yutopp/go-rtmp/message"

	"github.com/mediapipe/mediapipe/core/media/flv"
)

// publisher pushes one stream's clip over RTMP with go-rtmp's client.
type publisher struct {
	addr   string // host:port of rtmp-source
	app    string // "live"
	key    string // "s001"
	clip   *clip
	fast   bool
	ledger *ledger

	started atomic.Int64  // UnixNano timestamp 0 was due; set once init tags are out
	tags    atomic.Uint64 // media tags written
	bytes   atomic.Uint64 // body bytes written
	err     atomic.Pointer[error]
}

// csidMedia is the one RTMP chunk stream every message goes on. go-rtmp's
// writer interleaves the chunks of messages on different chunk streams, so
// an audio tag could overtake the keyframe written before it; one chunk
// stream keeps the publish order, which the ledger relies on.
const csidMedia = 6

// run publishes until ctx ends. go-rtmp's client has no state handler for a
// created stream, so its read loop ends at the server's first onStatus;
// publishing only writes, so that does not matter.
func (p *publisher) run(ctx context.Context) error {
	err := p.publish(ctx)
	if err != nil && ctx.Err() == nil {
		p.err.Store(&err)
	}
	return err
}

// quietLogrus silences go-rtmp's client, which logs chunk-size changes on
// logrus's global logger.
var quietLogrus sync.Once

func (p *publisher) publish(ctx context.Context) error {
	quietLogrus.Do(func() { logrus.SetLevel(logrus.WarnLevel) })
	logger := logrus.New()
	logger.Out = io.Discard
	d := &net.Dialer{Timeout: 5 * time.Second}
	cc, err := rtmp.DialWithDialer(d, "rtmp", p.addr, &rtmp.ConnConfig{Logger: logger})
	if err != nil {
		return fmt.Errorf("publisher %s: dial: %w", p.key, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = cc.Close() })
	defer stop()
	defer cc.Close()

	// go-rtmp's Connect and CreateStream wait for the reply without a
	// timeout: bound them by closing the connection.
	guard := time.AfterFunc(10*time.Second, func() { _ = cc.Close() })
	err = cc.Connect(&rtmpmsg.NetConnectionConnect{Command: rtmpmsg.NetConnectionConnectCommand{
		App: p.app, Type: "nonprivate", FlashVer: "FMLE/3.0", TCURL: "rtmp://" + p.addr + "/" + p.app,
	}})
	if err != nil {
		guard.Stop()
		return fmt.Errorf("publisher %s: connect: %w", p.key, err)
	}
	st, err := cc.CreateStream(nil, 4096)
	guard.Stop()
	if err != nil {
		return fmt.Errorf("publisher %s: createStream: %w", p.key, err)
	}
	if err := st.Publish(&rtmpmsg.NetStreamPublish{PublishingName: p.key, PublishingType: "live"}); err != nil {
		return fmt.Errorf("publisher %s: publish: %w", p.key, err)
	}

	var rd bytes.Reader
	audio := &rtmpmsg.AudioMessage{Payload: &rd}
	video := &rtmpmsg.VideoMessage{Payload: &rd}
	data := &rtmpmsg.DataMessage{Name: "@setDataFrame", Encoding: rtmpmsg.EncodingTypeAMF0, Body: &rd}
	write := func(t tag, ts uint32) error {
		rd.Reset(t.Body)
		switch t.Type {
		case flv.TypeAudio:
			return st.Write(csidMedia, ts, audio)
		case flv.TypeVideo:
			return st.Write(csidMedia, ts, video)
		default:
			return st.Write(csidMedia, ts, data)
		}
	}
	for _, t := range p.clip.Init {
		if err := write(t, 0); err != nil {
			return fmt.Errorf("publisher %s: %w", p.key, err)
		}
	}

	start := time.Now()
	p.started.Store(start.UnixNano())
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for lap := uint32(0); ; lap++ {
		off := lap * p.clip.Period
		for _, t := range p.clip.Media {
			ts := t.TS + off
			if !p.fast {
				if wait := time.Until(start.Add(time.Duration(ts) * time.Millisecond)); wait > 0 {
					timer.Reset(wait)
					select {
					case <-ctx.Done():
						return nil
					case <-timer.C:
					}
				}
			} else if ctx.Err() != nil {
				return nil
			}
			// Recorded before the write: the latency a viewer sees includes
			// the publisher's own RTMP framing, as it would with ffmpeg.
			p.ledger.add(t.Type, ts, time.Now().UnixNano(), t.Body)
			if err := write(t, ts); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("publisher %s: %w", p.key, err)
			}
			p.tags.Add(1)
			p.bytes.Add(uint64(len(t.Body)))
		}
	}
}

func (p *publisher) lastErr() error {
	if e := p.err.Load(); e != nil {
		return *e
	}
	return nil
}
