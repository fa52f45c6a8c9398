package core

import (
	"errors"
	"fmt"
	"sync"
)

// ErrIsolationUnavailable is what Isolate returns when no isolator is
// installed (the program does not link the plugin bridge).
var ErrIsolationUnavailable = errors.New("isolate is not available in this program")

// Isolator turns a built-in stage's definition into one whose stages run in
// a child process; plugins/bridge installs it.
type Isolator func(def Definition) (Definition, error)

var (
	isolatorMu sync.RWMutex
	isolator   Isolator
)

// SetIsolator installs the isolator used for isolate = true stages.
func SetIsolator(i Isolator) {
	isolatorMu.Lock()
	defer isolatorMu.Unlock()
	isolator = i
}

// Isolate returns def run out of process through the installed isolator.
// A spec with a NoIsolate reason is refused with that reason.
func Isolate(def Definition) (Definition, error) {
	if def.Spec.NoIsolate != "" {
		return Definition{}, fmt.Errorf("%s cannot run isolated: %s", def.Spec.Name, def.Spec.NoIsolate)
	}
	isolatorMu.RLock()
	i := isolator
	isolatorMu.RUnlock()
	if i == nil {
		return Definition{}, ErrIsolationUnavailable
	}
	return i(def)
}
