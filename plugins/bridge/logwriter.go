package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
)

// maxLine bounds a buffered stderr line; longer ones are logged in pieces.
const maxLine = 16 << 10

// logWriter re-logs a plugin's standard error into the host's slog, one
// record per line. JSON lines (slog's or hclog's) keep their level, message
// and attributes; other lines are logged as they are.
type logWriter struct {
	log *slog.Logger
	mu  sync.Mutex
	buf []byte
}

func newLogWriter(l *slog.Logger) *logWriter { return &logWriter{log: l} }

func (w *logWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			w.buf = append(w.buf, b...)
			if len(w.buf) >= maxLine {
				w.line(w.buf)
				w.buf = w.buf[:0]
			}
			break
		}
		w.buf = append(w.buf, b[:i]...)
		w.line(w.buf)
		w.buf = w.buf[:0]
		b = b[i+1:]
	}
	return n, nil
}

func (w *logWriter) line(b []byte) {
	b = bytes.TrimRight(b, "\r")
	if len(bytes.TrimSpace(b)) == 0 {
		return
	}
	if b[0] == '{' {
		var m map[string]any
		if json.Unmarshal(b, &m) == nil {
			w.json(m)
			return
		}
	}
	level := slog.LevelInfo
	s := string(b)
	if strings.HasPrefix(s, "panic: ") || strings.HasPrefix(s, "fatal error: ") || strings.HasPrefix(s, "goroutine ") {
		level = slog.LevelError
	}
	w.log.Log(context.Background(), level, s)
}

func (w *logWriter) json(m map[string]any) {
	pop := func(keys ...string) string {
		for _, k := range keys {
			if v, ok := m[k]; ok {
				delete(m, k)
				s, _ := v.(string)
				return s
			}
		}
		return ""
	}
	level := slog.LevelInfo
	switch strings.ToLower(pop("level", "@level")) {
	case "trace", "debug":
		level = slog.LevelDebug
	case "warn", "warning":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	msg := pop("msg", "@message")
	pop("time", "@timestamp")
	pop("@module", "@caller")
	attrs := make([]any, 0, 2*len(m))
	for k, v := range m {
		attrs = append(attrs, k, v)
	}
	w.log.Log(context.Background(), level, msg, attrs...)
}
