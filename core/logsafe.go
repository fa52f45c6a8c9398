package core

import (
	"strconv"
	"unicode/utf8"
)

// ClipLen is how many bytes of an untrusted string Clip keeps.
const ClipLen = 128

// Clip makes a string a stranger sent (a stream or app name, a path, a
// query, a user agent, an SDES name, a peer's error text) safe to log: it
// keeps the first ClipLen bytes, cut on a rune boundary, writes control
// characters and invalid UTF-8 as '?', and appends "…(N bytes)" when it cut,
// so one log line costs a bounded amount whatever was sent. A short, clean
// string is returned as it is, without allocating. Never pass secrets: Clip
// shortens, it does not redact.
func Clip(s string) string {
	if len(s) <= ClipLen && clean(s) {
		return s
	}
	b := make([]byte, 0, ClipLen+24)
	for i, r := range s {
		size := utf8.RuneLen(r)
		if r == utf8.RuneError {
			size = 1
		}
		if i+size > ClipLen {
			break
		}
		if r == utf8.RuneError || r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			b = append(b, '?')
			continue
		}
		b = utf8.AppendRune(b, r)
	}
	if len(s) > ClipLen {
		b = append(b, "…("...)
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, " bytes)"...)
	}
	return string(b)
}

// clean says whether s has no control characters and is valid UTF-8.
func clean(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}
