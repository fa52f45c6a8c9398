// Package all links every built-in stage into a binary: import it for its
// side effect, as cmd/mediapipe does.
package all

import ()
