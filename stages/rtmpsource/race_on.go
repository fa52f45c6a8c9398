//go:build race

package rtmpsource

const raceEnabled = true
