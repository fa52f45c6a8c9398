package testrun

import "syscall"

// procAttr has the kernel kill a started process when the test binary dies
// (a panic, a -timeout), so no relay process outlives its test. (Strictly,
// when the OS thread that started it exits; Go ends threads only under
// LockOSThread, which nothing here uses.)
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
