// Package core holds what a mediapipe stage author imports: the packet and
// stream model, the stage interface, its spec, metrics and the registry.
package core

import "fmt"

// Kind names what one packet of a stage's input or output is.
type Kind uint8

const (
	// KindNone marks the missing side of a source (no input) or a sink (no output).
	KindNone Kind = iota
	// KindAV is one RTMP media message: audio, video or script data with its timestamp.
	KindAV
	// KindFLV is one FLV tag: 11-byte tag header and body, no PreviousTagSize.
	KindFLV
	// KindRTP is one marshalled RTP packet.
	KindRTP
)

var kindNames = [...]string{KindNone: "—", KindAV: "av", KindFLV: "flv", KindRTP: "rtp"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ParseKind turns "av", "flv", "rtp" or "" (none) into a Kind.
func ParseKind(s string) (Kind, error) {
	switch s {
	case "", "none", "—":
		return KindNone, nil
	case "av":
		return KindAV, nil
	case "flv":
		return KindFLV, nil
	case "rtp":
		return KindRTP, nil
	}
	return KindNone, fmt.Errorf("unknown kind %q (want av, flv or rtp)", s)
}
