package e2e

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"time"
)

// junkSender throws malformed input at listeners, seeded for repeatability.
type junkSender struct{ rng *rand.Rand }

func newJunk(seed uint64) *junkSender { return &junkSender{rng: rand.New(rand.NewPCG(seed, seed))} }

func (j *junkSender) bytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(j.rng.UintN(256))
	}
	return b
}

// udp sends random datagrams, and RTP-shaped ones (version 2, payload type
// 100) from SSRCs nobody announced.
func (j *junkSender) udp(addr string) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return
	}
	defer c.Close()
	for i := 0; i < 5; i++ {
		_, _ = c.Write(j.bytes(1 + j.rng.IntN(1400)))
	}
	for i := 0; i < 5; i++ {
		p := j.bytes(12 + j.rng.IntN(1200))
		p[0], p[1] = 0x80, 100
		binary.BigEndian.PutUint32(p[8:], j.rng.Uint32())
		_, _ = c.Write(p)
	}
	// RTCP-shaped junk too (payload type byte 200–204).
	p := j.bytes(8 + j.rng.IntN(200))
	p[0], p[1] = 0x81, byte(200+j.rng.IntN(5))
	_, _ = c.Write(p)
}

// tcp connects, writes random bytes and hangs up.
func (j *junkSender) tcp(addr string) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(200 * time.Millisecond))
	_, _ = c.Write(j.bytes(1 + j.rng.IntN(4096)))
}

// http asks for paths no stream has and with methods a player never uses.
func (j *junkSender) http(base string) {
	client := &http.Client{Timeout: time.Second}
	for _, path := range []string{"/", "/live/", "/live/nope.flv", "/../../etc/passwd", "/live/junk.flv/extra", "/%zz", "/live/" + strings.Repeat("a", 5000) + ".flv"} {
		if resp, err := client.Get(base + path); err == nil {
			resp.Body.Close()
		}
	}
	if resp, err := client.Post(base+"/live/junk.flv", "text/plain", strings.NewReader("x")); err == nil {
		resp.Body.Close()
	}
}
