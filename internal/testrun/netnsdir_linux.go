package testrun

import (
	"fmt"
	"os"
	"syscall"
)

// privateNetnsDir mounts a tmpfs of this mount namespace's own on
// /run/netns (InNetns's copy, in a private mount namespace): what ip netns
// add names there goes with the namespace, not onto the host.
func privateNetnsDir() error {
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return err
	}
	if err := syscall.Mount("tmpfs", netnsDir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, "mode=0755"); err != nil {
		return fmt.Errorf("mounting a tmpfs on %s: %w", netnsDir, err)
	}
	return nil
}
