package bench

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
)

// Floor is the machine's raw loopback UDP send rate for 1200-byte
// datagrams, against which the relay's send path is stated.
type Floor struct {
	PlainPPS   float64 `json:"plain_pps"`   // one WriteToUDP per datagram
	BatchedPPS float64 `json:"batched_pps"` // ipv4.PacketConn.WriteBatch of 64 (sendmmsg)
	PlainMbps  float64 `json:"plain_mbps"`
	BatchMbps  float64 `json:"batched_mbps"`
	RecvShare  float64 `json:"received_share"` // datagrams the drain received / sent, batched run
}

const floorSize, floorBatch = 1200, 64

// measureFloor sends for d with each method to a loopback receiver that
// drains the socket on another goroutine, as the edge's udp-source would.
func measureFloor(ctx context.Context, d time.Duration) (Floor, error) {
	var f Floor
	pps, _, err := floorRun(ctx, d, false)
	if err != nil {
		return f, err
	}
	f.PlainPPS = pps
	pps, share, err := floorRun(ctx, d, true)
	if err != nil {
		return f, err
	}
	f.BatchedPPS, f.RecvShare = pps, share
	f.PlainMbps = f.PlainPPS * floorSize * 8 / 1e6
	f.BatchMbps = f.BatchedPPS * floorSize * 8 / 1e6
	return f, nil
}

func floorRun(ctx context.Context, d time.Duration, batched bool) (pps, share float64, err error) {
	rc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return 0, 0, err
	}
	defer rc.Close()
	_ = rc.SetReadBuffer(4 << 20)
	sc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return 0, 0, err
	}
	defer sc.Close()
	_ = sc.SetWriteBuffer(4 << 20)
	dst := rc.LocalAddr().(*net.UDPAddr)

	var got atomic.Uint64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
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
			got.Add(uint64(n))
		}
	}()

	payload := make([]byte, floorSize)
	var sent uint64
	start := time.Now()
	deadline := start.Add(d)
	if batched {
		pc := ipv4.NewPacketConn(sc)
		ms := make([]ipv4.Message, floorBatch)
		for i := range ms {
			ms[i].Buffers = [][]byte{payload}
			ms[i].Addr = dst
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
	} else {
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
	time.Sleep(20 * time.Millisecond) // let the drain catch up
	rc.Close()
	wg.Wait()
	if sent > 0 {
		share = float64(got.Load()) / float64(sent)
	}
	return float64(sent) / el.Seconds(), share, nil
}
