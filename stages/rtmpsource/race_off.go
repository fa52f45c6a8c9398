//go:build !race

package rtmpsource

const raceEnabled = false
