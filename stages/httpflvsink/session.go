package httpflvsink

import "github.com/mediapipe/mediapipe/core"

// register adds v to the runtime's sessions (the control API, play/stop
// notices) once it has joined; the returned func removes it. The funcs
// take v's lock only when the API asks, never per tag.
func (s *Stage) register(v *viewer, remote string) (unregister func()) {
	return s.env.Sessions.Add(&core.Session{
		Kind: core.Viewer, Stream: v.st.cs.Name, Protocol: "http-flv", Client: remote,
		Pipeline: s.env.Pipeline, Stage: s.env.Index,
		Bytes: func() uint64 {
			v.mu.Lock()
			defer v.mu.Unlock()
			return uint64(v.enq)
		},
		Queue: func() int {
			v.mu.Lock()
			defer v.mu.Unlock()
			return len(v.q) + v.nout
		},
		Kick: func() { s.kick(v) },
	})
}

// kick cuts v for the control API as shedding does: marked dead, its
// socket aborted, its goroutine woken to clean up.
func (s *Stage) kick(v *viewer) {
	v.mu.Lock()
	was := v.dead
	v.dead = true
	v.mu.Unlock()
	if was {
		return
	}
	s.env.Metrics.Counter("viewers_kicked").Inc()
	s.auth.Forget(v.st.cs.Name) // its reconnect asks auth_url again
	abort(v.tcp)
	v.signal()
}
