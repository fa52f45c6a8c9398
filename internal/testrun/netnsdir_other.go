//go:build !linux

package testrun

import "errors"

func privateNetnsDir() error { return errors.New("mount namespaces are Linux only") }
