// Package tcplisten is the TCP listener a serving stage embeds: bound at Open
// so a taken address fails before anything runs, or at Run when nobody called Open.
package tcplisten

import (
	"context"
	"fmt"
	"net"
)

// Listener gives the stage that embeds it its Open and Addr methods.
type Listener struct {
	stage   string // error prefix, e.g. "rtmp-source"
	address string
	ln      net.Listener
}

// New returns a Listener for address, not bound yet; stage names the errors.
func New(stage, address string) Listener {
	return Listener{stage: stage, address: address}
}

// Open binds the listener, so a taken address fails before anything runs.
func (l *Listener) Open(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", l.address)
	if err != nil {
		return fmt.Errorf("%s: listen %s: %w", l.stage, l.address, err)
	}
	l.ln = ln
	return nil
}

// Addr is the bound listener address (after Open).
func (l *Listener) Addr() net.Addr {
	if l.ln == nil {
		return nil
	}
	return l.ln.Addr()
}

// Listen returns the listener for Run, binding it first when Open was not called.
func (l *Listener) Listen(ctx context.Context) (net.Listener, error) {
	if l.ln == nil {
		if err := l.Open(ctx); err != nil {
			return nil, err
		}
	}
	return l.ln, nil
}
