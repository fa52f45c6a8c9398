package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/mediapipe/mediapipe/core"
	"github.com/mediapipe/mediapipe/core/media/rtpheader"
	"github.com/mediapipe/mediapipe/host"
)

// Floor is the machine's raw loopback UDP send rate for 1200-byte
// datagrams, and the udp-sink stage's rate measured the same way (same
// datagram size, a connected socket to the same kind of receiver, which
// reads throughout), so the relay's send path can be stated as a fraction
// of the raw one.
type Floor struct {
	PlainPPS   float64 `json:"plain_pps"`   // one WriteToUDP per datagram
	BatchedPPS float64 `json:"batched_pps"` // ipv4.PacketConn.WriteBatch of 64 (sendmmsg) on a connected socket
	PlainMbps  float64 `json:"plain_mbps"`
	BatchMbps  float64 `json:"batched_mbps"`
	RecvShare  float64 `json:"received_share"` // datagrams the drain received / sent, batched run
	// GSO is the raw ceiling of udp-sink's default path: runs of 48
	// datagrams handed over as one UDP_SEGMENT send; 0 where the kernel
	// refuses it.
	GSOPPS  float64 `json:"gso_pps,omitempty"`
	GSOMbps float64 `json:"gso_mbps,omitempty"`

	// The udp-sink stage, built from the registry with the relay's settings
	// and fed pooled RTP packets by a generator goroutine through a queue,
	// as the stage before it in a pipeline would.
	SinkPPS        float64 `json:"udp_sink_pps"` // RTP packets sent per second (its RTCP not counted)
	SinkMbps       float64 `json:"udp_sink_mbps"`
	SinkRecvShare  float64 `json:"udp_sink_received_share"`
	SinkShareGSO   float64 `json:"udp_sink_share_of_gso,omitempty"` // udp-sink ÷ GSO packets/s
	SinkSendErrors float64 `json:"udp_sink_send_errors,omitempty"`
	SinkSettings   string  `json:"udp_sink_settings"` // its send parameters, as defaulted
}

const floorSize, floorBatch, floorGSOSegs = 1200, 64, 48 // 48 × 1200 B fits one 64 KB send

// floor methods
const (
	floorPlain = iota
	floorBatched
	floorGSO
)

// measureFloor sends for d with each method to a loopback receiver that
// drains the socket on another goroutine, as the edge's udp-source would.
func measureFloor(ctx context.Context, d time.Duration) (Floor, error) {
	var f Floor
	var err error
	if f.PlainPPS, _, err = floorRun(ctx, d, floorPlain); err != nil {
		return f, err
	}
	if f.BatchedPPS, f.RecvShare, err = floorRun(ctx, d, floorBatched); err != nil {
		return f, err
	}
	if pps, _, err := floorRun(ctx, d, floorGSO); err == nil {
		f.GSOPPS = pps
	} // else: no UDP_SEGMENT here; udp-sink then falls back to sendmmsg too
	if ctx.Err() == nil { // interrupted: the caller reports what ran
		s, err := sinkRun(ctx, d)
		if err != nil {
			return f, err
		}
		f.SinkPPS, f.SinkRecvShare, f.SinkSendErrors, f.SinkSettings = s.pps, s.share, s.sendErrs, s.settings
	}
	mbps := func(pps float64) float64 { return pps * floorSize * 8 / 1e6 }
	f.PlainMbps, f.BatchMbps, f.GSOMbps, f.SinkMbps = mbps(f.PlainPPS), mbps(f.BatchedPPS), mbps(f.GSOPPS), mbps(f.SinkPPS)
	if f.GSOPPS > 0 {
		f.SinkShareGSO = f.SinkPPS / f.GSOPPS
	}
	return f, nil
}

// drain is the floor's receiver: a loopback socket read on its own
// goroutine in batches, counting datagrams.
type drain struct {
	conn *net.UDPConn
	got  atomic.Uint64
	wg   sync.WaitGroup
}

func startDrain() (*drain, error) {
	rc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("floor receiver: %w", err)
	}
	_ = rc.SetReadBuffer(4 << 20)
	d := &drain{conn: rc}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		pc := ipv4.NewPacketConn(rc)
		ms := make([]ipv4.Message, floorBatch)
		for i := range ms {
			ms[i].Buffers = [][]byte{make([]byte, 2048)}
		}
		for {
			n, err := pc.ReadBatch(ms, 0)
			if err != nil {
				return
			}
			d.got.Add(uint64(n))
		}
	}()
	return d, nil
}

func (d *drain) addr() *net.UDPAddr { return d.conn.LocalAddr().(*net.UDPAddr) }

// stop lets the receiver catch up, closes it and returns what it received.
func (d *drain) stop() uint64 {
	time.Sleep(20 * time.Millisecond)
	d.conn.Close()
	d.wg.Wait()
	return d.got.Load()
}

func floorRun(ctx context.Context, d time.Duration, method int) (pps, share float64, err error) {
	rx, err := startDrain()
	if err != nil {
		return 0, 0, err
	}
	dst := rx.addr()
	// The batched and GSO senders are connected to the receiver, as
	// udp-sink's socket is to each destination; the plain one is the
	// WriteToUDP baseline.
	var sc *net.UDPConn
	if method == floorPlain {
		sc, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	} else {
		sc, err = net.DialUDP("udp4", nil, dst)
	}
	if err == nil && method == floorGSO {
		if err = setGSO(sc, floorSize); err != nil {
			sc.Close()
		}
	}
	if err != nil {
		rx.stop()
		return 0, 0, fmt.Errorf("floor sender: %w", err)
	}
	defer sc.Close()
	_ = sc.SetWriteBuffer(4 << 20) // udp-sink's default write_buffer

	payload := make([]byte, floorSize)
	var sent uint64
	start := time.Now()
	deadline := start.Add(d)
	switch method {
	case floorGSO:
		run := make([]byte, floorSize*floorGSOSegs) // segmented by the kernel into 1200 B datagrams
		for i := 0; ; i++ {
			if i%16 == 0 && (time.Now().After(deadline) || ctx.Err() != nil) {
				break
			}
			if _, err := sc.Write(run); err == nil {
				sent += floorGSOSegs
			}
		}
	case floorBatched:
		pc := ipv4.NewPacketConn(sc)
		ms := make([]ipv4.Message, floorBatch)
		for i := range ms {
			ms[i].Buffers = [][]byte{payload} // Addr nil: the socket is connected
		}
		for i := 0; ; i++ {
			if i%16 == 0 && (time.Now().After(deadline) || ctx.Err() != nil) {
				break
			}
			for off := 0; off < len(ms); {
				n, err := pc.WriteBatch(ms[off:], 0)
				if err != nil {
					break
				}
				off += n
				sent += uint64(n)
			}
		}
	default:
		for i := 0; ; i++ {
			if i%1024 == 0 && (time.Now().After(deadline) || ctx.Err() != nil) {
				break
			}
			if _, err := sc.WriteToUDP(payload, dst); err == nil {
				sent++
			}
		}
	}
	el := time.Since(start)
	got := rx.stop()
	if sent > 0 {
		share = float64(got) / float64(sent)
	}
	return float64(sent) / el.Seconds(), share, nil
}

// setGSO makes every write on c one UDP_SEGMENT run of seg-byte datagrams.
func setGSO(c *net.UDPConn, seg int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT, seg) }); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("UDP_SEGMENT: %w", serr)
	}
	return nil
}

// discard is the Output a sink is given: it has nothing to emit.
type discard struct{}

func (discard) Emit(p *core.Packet) { p.Release() }

type sinkFloor struct {
	pps, share, sendErrs float64
	settings             string
}

// sinkRun drives the real udp-sink stage flat out for d. It is built from
// the registry as the relay builds it (only destinations set, everything
// else defaulted) and sends to a drain like floorRun's; a generator
// goroutine fills pooled 1200-byte RTP packets and queues them, as the
// stage before the sink does in a pipeline, into a queue of the pipeline's
// default depth. Time runs until the stage has sent all it was given.
func sinkRun(ctx context.Context, d time.Duration) (sinkFloor, error) {
	var res sinkFloor
	def, ok := core.Default.Lookup("udp-sink")
	if !ok {
		return res, errors.New("udp-sink floor: the stage is not registered")
	}
	rx, err := startDrain()
	if err != nil {
		return res, err
	}
	env := core.TestEnv("udp-sink")
	st, err := def.Build(map[string]any{"destinations": []any{rx.addr().String()}}, env)
	if err == nil {
		if o, ok := st.(core.Opener); ok {
			err = o.Open(ctx)
		}
	}
	if err != nil {
		rx.stop()
		return res, fmt.Errorf("udp-sink floor: %w", err)
	}
	res.settings = sinkSettings(def.Spec)

	hdr := rtpheader.Header{Marker: true, PayloadType: 100, SSRC: 0x6d706662}
	in := make(chan *core.Packet, host.DefaultQueue)
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx, in, discard{}) }()

	s := core.NewStream("bench/floor")
	in <- core.NewEvent(core.EventStart, s)
	start := time.Now()
	deadline := start.Add(d)
	for i := 0; ; i++ {
		if i%256 == 0 && (time.Now().After(deadline) || ctx.Err() != nil) {
			break
		}
		p := core.NewPacket(floorSize)
		clear(p.Data[rtpheader.Size:])
		hdr.Seq = uint16(i)
		rtpheader.Put(p.Data, hdr)
		p.Stream = s
		in <- p
	}
	in <- core.NewEvent(core.EventEnd, s)
	close(in)
	runErr := <-done
	el := time.Since(start)
	got := rx.stop()
	if runErr != nil {
		return res, fmt.Errorf("udp-sink floor: %w", runErr)
	}
	all := core.CounterValue(env.Metrics.Counter("datagrams_sent"))
	rtpSent := all - core.CounterValue(env.Metrics.Counter("rtcp_sent"))
	res.pps = rtpSent / el.Seconds()
	if all > 0 {
		res.share = float64(got) / all
	}
	res.sendErrs = env.Metrics.Drop("send_error").Value()
	return res, nil
}

// sinkSettings names udp-sink's send parameters with their defaults, which
// the relay (and so the floor run) uses: "batch=64 gso=true …".
func sinkSettings(spec core.Spec) string {
	var b []string
	for _, p := range spec.Params {
		switch p.Name {
		case "batch", "batch_wait", "gso", "write_buffer":
			b = append(b, p.Name+"="+p.Default)
		}
	}
	return strings.Join(b, " ")
}
