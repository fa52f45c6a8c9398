package flvfilesink

import "github.com/mediapipe/mediapipe/core/media/amf0"

// metaSlots finds, in an onMetaData script tag body, where the 8-byte
// values of the top-level numbers "duration" and "filesize" are (offsets
// into body), or -1 for each one that is not there. Anything it cannot read
// is taken as absent: the tag is then left as it is.
func metaSlots(body []byte) (duration, filesize int) {
	duration, filesize = -1, -1
	amf0.MetaNumbers(body, func(key []byte, at int) {
		switch string(key) { // compared only: no copy
		case "duration":
			duration = at
		case "filesize":
			filesize = at
		}
	})
	return duration, filesize
}
