package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
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

	// CPU per datagram sent, in ns: the process's CPU time over the run
	// less the receiver's thread (and, for the sink, the generator's), so
	// the send paths are compared by what they cost, which neighbours on a
	// shared machine and the receiver's and generator's share of its cores
	// move far less than the rates.
	PlainCPU   float64 `json:"plain_cpu_ns_per_pkt"`
	BatchedCPU float64 `json:"batched_cpu_ns_per_pkt"`
	GSOCPU     float64 `json:"gso_cpu_ns_per_pkt,omitempty"`

	// The udp-sink stage, built from the registry with the relay's settings
	// and fed pooled RTP packets by a generator goroutine through a queue,
	// as the stage before it in a pipeline would.
	SinkPPS       float64 `json:"udp_sink_pps"` // RTP packets sent per second (its RTCP not counted)
	SinkMbps      float64 `json:"udp_sink_mbps"`
	SinkRecvShare float64 `json:"udp_sink_received_share"`
	SinkShareGSO  float64 `json:"udp_sink_share_of_gso,omitempty"` // udp-sink ÷ GSO packets/s
	// SinkCPU is the stage's CPU per RTP packet (its goroutine, the
	// channel receive, the Go runtime); SinkDriverCPU the generator's
	// (pool, filling, channel send), which the raw loops do not pay.
	SinkCPU         float64 `json:"udp_sink_cpu_ns_per_pkt"`
	SinkDriverCPU   float64 `json:"udp_sink_driver_cpu_ns_per_pkt"`
	SinkCPUShareGSO float64 `json:"udp_sink_cpu_share_of_gso,omitempty"` // GSO CPU/packet ÷ udp-sink CPU/packet: 1 is as cheap as the raw loop
	SinkSendErrors  float64 `json:"udp_sink_send_errors,omitempty"`
	SinkSettings    string  `json:"udp_sink_settings"` // its send parameters, as defaulted
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
	if f.PlainPPS, _, f.PlainCPU, err = floorRun(ctx, d, floorPlain); err != nil {
		return f, err
	}
	if f.BatchedPPS, f.RecvShare, f.BatchedCPU, err = floorRun(ctx, d, floorBatched); err != nil {
		return f, err
	}
	if pps, _, cpu, err := floorRun(ctx, d, floorGSO); err == nil {
		f.GSOPPS, f.GSOCPU = pps, cpu
	} // else: no UDP_SEGMENT here; udp-sink then falls back to sendmmsg too
	if ctx.Err() == nil { // interrupted: the caller reports what ran
		s, err := sinkRun(ctx, d)
		if err != nil {
			return f, err
		}
		f.SinkPPS, f.SinkRecvShare, f.SinkSendErrors, f.SinkSettings = s.pps, s.share, s.sendErrs, s.settings
		f.SinkCPU, f.SinkDriverCPU = s.cpu, s.driverCPU
	}
	mbps := func(pps float64) float64 { return pps * floorSize * 8 / 1e6 }
	f.PlainMbps, f.BatchMbps, f.GSOMbps, f.SinkMbps = mbps(f.PlainPPS), mbps(f.BatchedPPS), mbps(f.GSOPPS), mbps(f.SinkPPS)
	if f.GSOPPS > 0 {
		f.SinkShareGSO = f.SinkPPS / f.GSOPPS
	}
	if f.GSOCPU > 0 && f.SinkCPU > 0 {
		f.SinkCPUShareGSO = f.GSOCPU / f.SinkCPU
	}
	return f, nil
}

// drain is the floor's receiver: a loopback socket read on its own
// goroutine in batches, counting datagrams.
type drain struct {
	conn *net.UDPConn
	got  atomic.Uint64
	wg   sync.WaitGroup
	cpu  time.Duration // its thread's CPU time, once it has ended
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
		// On its own thread, so its CPU time can be told from the sender's;
		// the thread ends with the goroutine.
		runtime.LockOSThread()
		t0 := threadCPU()
		defer func() { d.cpu = threadCPU() - t0 }()
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

// threadCPU is the calling thread's CPU time, user and system; the
// goroutine must be locked to its thread.
func threadCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_THREAD, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// stop lets the receiver catch up, closes it and returns what it received.
func (d *drain) stop() uint64 {
	time.Sleep(20 * time.Millisecond)
	d.conn.Close()
	d.wg.Wait()
	return d.got.Load()
}

// floorRun returns the send rate, the share the receiver got and the
// sending side's CPU per datagram in ns.
func floorRun(ctx context.Context, d time.Duration, method int) (pps, share, cpu float64, err error) {
	cpu0 := cpuTime()
	rx, err := startDrain()
	if err != nil {
		return 0, 0, 0, err
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
		return 0, 0, 0, fmt.Errorf("floor sender: %w", err)
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
		cpu = float64(cpuTime()-cpu0-rx.cpu) / float64(sent)
	}
	return float64(sent) / el.Seconds(), share, cpu, nil
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
	cpu, driverCPU       float64 // ns per RTP packet: the stage's, the generator's
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
	cpu0 := cpuTime()
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
	// The generator on its own thread too, so its CPU time is told from
	// the stage's.
	runtime.LockOSThread()
	gen0 := threadCPU()
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
	gen := threadCPU() - gen0
	runtime.UnlockOSThread()
	runErr := <-done
	el := time.Since(start)
	got := rx.stop()
	if runErr != nil {
		return res, fmt.Errorf("udp-sink floor: %w", runErr)
	}
	all := core.CounterValue(env.Metrics.Counter("datagrams_sent"))
	rtpSent := all - core.CounterValue(env.Metrics.Counter("rtcp_sent"))
	res.pps = rtpSent / el.Seconds()
	if rtpSent > 0 {
		res.cpu = float64(cpuTime()-cpu0-rx.cpu-gen) / rtpSent
		res.driverCPU = float64(gen) / rtpSent
	}
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
