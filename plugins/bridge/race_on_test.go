//go:build race

package bridge

// raceEnabled builds the test plugins with -race too, so the SDK's side is
// checked when the tests are.
const raceEnabled = true
