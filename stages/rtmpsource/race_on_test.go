//go:build race

package rtmpsource

// raceOn: the race detector makes sync.Pool drop items at random, so
// allocation counts of pooled paths mean nothing under it.
const raceOn = true
