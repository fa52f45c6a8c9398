//go:build !race

package httpflvsink

const raceOn = false
