//go:build !linux

package testrun

import "syscall"

// procAttr: only Linux can tie a child's life to its parent's; elsewhere the
// test's cleanup alone stops the process.
func procAttr() *syscall.SysProcAttr { return nil }
