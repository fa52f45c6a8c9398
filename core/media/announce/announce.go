// Package announce tells RTP from RTCP muxed on one port (RFC 5761) and builds
// and parses the RTCP stream announcement (SR + SDES NAME, BYE); pure bytes.
package announce

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/pion/rtcp"

	"github.com/mediapipe/mediapipe/core/media/rtpheader"
)

// RTCP packet types occupy the second byte's 192–223 (RFC 5761 §4); RTP
// payload types 96–127 (with or without the marker bit) never land there.
const (
	rtcpTypeMin = 192
	rtcpTypeMax = 223
)

// MaxNameLen is the longest stream name an SDES item can carry.
const MaxNameLen = 255

// Kind says what a datagram is.
type Kind uint8

const (
	// Junk is neither RTP nor RTCP.
	Junk Kind = iota
	// RTP is a datagram shaped as an RTP packet (still to be checked).
	RTP
	// RTCP is a datagram whose second byte is an RTCP packet type.
	RTCP
)

func (k Kind) String() string {
	switch k {
	case RTP:
		return "rtp"
	case RTCP:
		return "rtcp"
	}
	return "junk"
}

// Classify tells RTP from RTCP by the version bits and the second byte
// (RFC 5761 §4). It checks only the first two bytes' shape; use
// rtpheader.Check before trusting an RTP header.
func Classify(b []byte) Kind {
	if len(b) < 4 || rtpheader.Version(b) != 2 {
		return Junk
	}
	if b[1] >= rtcpTypeMin && b[1] <= rtcpTypeMax {
		if len(b) < 8 { // shortest useful RTCP packet: header + SSRC
			return Junk
		}
		return RTCP
	}
	if len(b) < rtpheader.Size {
		return Junk
	}
	return RTP
}

// ValidName reports whether s can name a stream in an SDES NAME item:
// 1–255 bytes of UTF-8 without control characters (it ends up in logs,
// metrics and HTTP paths).
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// ntpEpochOffset is the seconds from 1900-01-01 (NTP) to 1970-01-01 (Unix).
const ntpEpochOffset = 2208988800

// NTP converts t to a 64-bit NTP timestamp (32.32 fixed point since 1900).
func NTP(t time.Time) uint64 {
	ns := t.UnixNano()
	secs := uint64(ns/1e9) + ntpEpochOffset
	frac := (uint64(ns%1e9) << 32) / 1e9
	return secs<<32 | frac
}

// NTPTime converts a 64-bit NTP timestamp back to a time (NTP's inverse).
func NTPTime(ntp uint64) time.Time {
	secs := int64(ntp>>32) - ntpEpochOffset
	ns := int64((ntp & 0xffffffff) * 1e9 >> 32)
	return time.Unix(secs, ns)
}

// Sender is what a sender report says about one SSRC.
type Sender struct {
	SSRC    uint32
	NTP     uint64 // wall clock, see NTP
	RTPTime uint32 // the RTP timestamp matching NTP
	Packets uint32 // RTP packets sent so far
	Octets  uint32 // RTP payload octets sent so far
}

// Naming is one SDES chunk: the SSRC and its CNAME and NAME items.
type Naming struct {
	SSRC  uint32
	CNAME string
	Name  string
}

// AppendAnnounce appends a compound RTCP packet (SR then SDES with CNAME and
// NAME = name) announcing s to dst.
func AppendAnnounce(dst []byte, s Sender, cname, name string) ([]byte, error) {
	if !ValidName(name) {
		return dst, fmt.Errorf("announce: stream name %q cannot go in SDES", name)
	}
	if len(cname) == 0 || len(cname) > MaxNameLen {
		return dst, fmt.Errorf("announce: CNAME must be 1–%d bytes", MaxNameLen)
	}
	// Written by hand: rtcp.Marshal allocates a dozen times per call, and
	// udp-sink sends this every second for every stream. The test holds the
	// bytes to pion's.
	dst = append(dst, 0x80, uint8(rtcp.TypeSenderReport), 0, srLen/4-1) // V=2, no report blocks
	dst = binary.BigEndian.AppendUint32(dst, s.SSRC)
	dst = binary.BigEndian.AppendUint64(dst, s.NTP)
	dst = binary.BigEndian.AppendUint32(dst, s.RTPTime)
	dst = binary.BigEndian.AppendUint32(dst, s.Packets)
	dst = binary.BigEndian.AppendUint32(dst, s.Octets)
	// One SDES chunk: SSRC, the two items, then at least one null octet
	// up to the next 32-bit boundary.
	items := 2 + len(cname) + 2 + len(name)
	chunk := 4 + items + 1
	chunk += (4 - chunk%4) % 4
	dst = append(dst, 0x81, uint8(rtcp.TypeSourceDescription)) // V=2, one chunk
	dst = binary.BigEndian.AppendUint16(dst, uint16((4+chunk)/4-1))
	dst = binary.BigEndian.AppendUint32(dst, s.SSRC)
	dst = append(dst, uint8(rtcp.SDESCNAME), uint8(len(cname)))
	dst = append(dst, cname...)
	dst = append(dst, uint8(rtcp.SDESName), uint8(len(name)))
	dst = append(dst, name...)
	for range chunk - 4 - items {
		dst = append(dst, 0)
	}
	return dst, nil
}

// srLen is the length of a sender report without report blocks.
const srLen = 28

// AppendBye appends an RTCP BYE for ssrc, with an optional reason, to dst.
// RFC 3550 wants every compound packet to start with a report, so an empty
// receiver report leads.
func AppendBye(dst []byte, ssrc uint32, reason string) ([]byte, error) {
	if len(reason) > MaxNameLen {
		reason = reason[:MaxNameLen]
	}
	b, err := rtcp.Marshal([]rtcp.Packet{
		&rtcp.ReceiverReport{SSRC: ssrc},
		&rtcp.Goodbye{Sources: []uint32{ssrc}, Reason: reason},
	})
	if err != nil {
		return dst, fmt.Errorf("announce: marshal bye: %w", err)
	}
	return append(dst, b...), nil
}

// Report is what one RTCP datagram said, as far as stream announcement goes.
type Report struct {
	Senders []Sender
	Names   []Naming // chunks with a NAME or CNAME item
	Byes    []uint32
}

// Reset empties r, keeping its slices' room.
func (r *Report) Reset() {
	r.Senders, r.Names, r.Byes = r.Senders[:0], r.Names[:0], r.Byes[:0]
}

// ErrNotRTCP is returned by Parse for a datagram that is not RTCP.
var ErrNotRTCP = errors.New("announce: not an RTCP datagram")

// Parse reads a (compound) RTCP datagram into r, which it resets first.
// Packet types other than SR, SDES and BYE are skipped. Names are not
// checked: use ValidName before trusting one.
func Parse(b []byte, r *Report) error {
	r.Reset()
	if Classify(b) != RTCP {
		return ErrNotRTCP
	}
	pkts, err := rtcp.Unmarshal(b)
	if err != nil {
		return fmt.Errorf("announce: %w", err)
	}
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.SenderReport:
			r.Senders = append(r.Senders, Sender{SSRC: p.SSRC, NTP: p.NTPTime, RTPTime: p.RTPTime, Packets: p.PacketCount, Octets: p.OctetCount})
		case *rtcp.SourceDescription:
			for _, c := range p.Chunks {
				n := Naming{SSRC: c.Source}
				for _, it := range c.Items {
					switch it.Type {
					case rtcp.SDESCNAME:
						n.CNAME = it.Text
					case rtcp.SDESName:
						n.Name = it.Text
					}
				}
				if n.CNAME != "" || n.Name != "" {
					r.Names = append(r.Names, n)
				}
			}
		case *rtcp.Goodbye:
			r.Byes = append(r.Byes, p.Sources...)
		}
	}
	return nil
}
