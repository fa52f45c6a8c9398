package core

import (
	"time"

	"sync"
	"testing"
)

// A shared buffer goes back to the pool only when the packet and every
// share of it (shares of shares included) are released, in any order.
func TestShareReleasesBufferWithTheLastHolder(t *testing.T) {
	p := NewPacket(10)
	copy(p.Data, "0123456789")
	s1 := p.Share()
	s2 := s1.Share()
	if s2.owner != p || p.refs.Load() != 2 {
		t.Fatalf("share of a share: owner %p refs %d, want the first packet and 2", s2.owner, p.refs.Load())
	}
	p.Release()
	s2.Release()
	if len(p.Data) != 10 || string(s1.Data) != "0123456789" {
		t.Fatalf("buffer recycled while a share holds it: %q", s1.Data)
	}
	s1.Release()
	if len(p.Data) != 0 || p.refs.Load() != 0 {
		t.Fatalf("after the last release: len %d refs %d, want the buffer back in the pool", len(p.Data), p.refs.Load())
	}
}

// A share's fields are its own, and appending to its Data copies rather
// than writing past the end into the buffer the others read.
func TestShareIsReadOnlyBytesOwnFields(t *testing.T) {
	p := NewPacket(4)
	copy(p.Data, "abcd")
	p.Timestamp = 7
	s := p.Share()
	s.Timestamp = 9
	s.Data = append(s.Data, 'e')
	full := p.Data[:5]
	if p.Timestamp != 7 || full[4] == 'e' {
		t.Fatalf("a share changed the original: ts %d, byte after the end %q", p.Timestamp, full[4])
	}
	s.Release()
	p.Release()
}

// Releasing shares from many goroutines at once recycles exactly once (run
// with -race).
func TestShareConcurrentRelease(t *testing.T) {
	for range 200 {
		p := NewPacket(100)
		shares := make([]*Packet, 8)
		for i := range shares {
			shares[i] = p.Share()
		}
		var wg sync.WaitGroup
		for _, s := range append(shares, p) {
			wg.Go(s.Release)
		}
		wg.Wait()
		if p.refs.Load() != 0 {
			t.Fatalf("refs %d after every holder released", p.refs.Load())
		}
	}
}

func TestShareDoesNotAllocate(t *testing.T) {
	if raceOn {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	p := NewPacket(1200)
	if allocs := testing.AllocsPerRun(100, func() { p.Share().Release() }); allocs != 0 {
		t.Fatalf("%v allocs per share and release", allocs)
	}
	p.Release()
}

// Rebuilt travels with a packet's copies and shares (a fan-out after
// fec-decoder keeps it) and does not outlive the packet in the pool.
func TestRebuiltFlag(t *testing.T) {
	p := NewPacket(100)
	p.Rebuilt = true
	c, s := p.Clone(), p.Share()
	if !c.Rebuilt || !s.Rebuilt {
		t.Fatalf("clone %v, share %v: the flag was lost", c.Rebuilt, s.Rebuilt)
	}
	c.Release()
	s.Release()
	if s.Rebuilt {
		t.Fatal("a released share keeps the flag")
	}
	p.Release()
	if p.Rebuilt {
		t.Fatal("a released packet keeps the flag for its next user")
	}
}

// The FEC hint travels with a packet's copies and shares as Rebuilt does,
// and does not outlive the packet in the pool.
func TestFECHintTravels(t *testing.T) {
	p := NewPacket(100)
	h := FECHint{Hold: 30 * time.Millisecond, From: 7, On: true}
	p.FEC = h
	c, s := p.Clone(), p.Share()
	if c.FEC != h || s.FEC != h {
		t.Fatalf("clone %+v, share %+v: the hint was lost", c.FEC, s.FEC)
	}
	c.Release()
	s.Release()
	if s.FEC != (FECHint{}) {
		t.Fatal("a released share keeps the hint")
	}
	p.Release()
	if p.FEC != (FECHint{}) {
		t.Fatal("a released packet keeps the hint for its next user")
	}
}
