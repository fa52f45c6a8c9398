package core

import (
	"testing"
	"time"
)

// SinceSent maps a tag's timestamp through the sender's clock, across the
// 32-bit timestamp's wrap, and says when no clock is known.
func TestSinceSent(t *testing.T) {
	st := NewStream("live/x")
	now := time.Unix(1_700_000_000, 0)
	if _, ok := st.SinceSent(7, 5, now); ok {
		t.Fatal("a latency without a sender clock")
	}
	st.SetSenderClock(&SenderClock{SSRC: 7, Wall: now.Add(-time.Second), TS: 0xffffff00})
	if _, ok := st.SinceSent(8, 0x10, now); ok {
		t.Fatal("another sender's timestamps mapped by this sender's clock")
	}
	// Sent 0x100 + 0x10 ms after the report's timestamp, past the wrap.
	d, ok := st.SinceSent(7, 0x10, now)
	want := time.Second - 0x110*time.Millisecond
	if !ok || d != want {
		t.Fatalf("SinceSent = %v, %v; want %v", d, ok, want)
	}
}
