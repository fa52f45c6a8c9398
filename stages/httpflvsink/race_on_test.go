//go:build race

package httpflvsink

// raceOn: sync.Pool drops items at random under the race detector, so
// allocation counts mean nothing there.
const raceOn = true
