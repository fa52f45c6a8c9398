//go:build !race

package rtmpsource

const raceOn = false
