//go:build !unix

package testrun

import "testing"

// Exclusive is a no-op where flock is missing.
func Exclusive(testing.TB) {}
