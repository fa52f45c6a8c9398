package host

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	gotoml "github.com/pelletier/go-toml/v2"
)

func tomlError(err error, data []byte) string {
	var de *gotoml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		return fmt.Sprintf("line %d, column %d: %s", row, col, strings.TrimPrefix(de.Error(), "toml: "))
	}
	s := err.Error()
	// koanf wraps the parser's error; the parser's text (with line and column) is what helps.
	if i := strings.LastIndex(s, "toml: "); i >= 0 {
		s = s[i:]
	}
	s = strings.TrimPrefix(s, "toml: ")
	// The parser reports a repeated key or table without a position: find it.
	if line := locateRepeat(s, data); line > 0 {
		return fmt.Sprintf("line %d: %s", line, s)
	}
	return s
}

var (
	repeatedKey   = regexp.MustCompile(`^key (\S+) is already defined`)
	repeatedTable = regexp.MustCompile(`^table (\S+) already exists`)
	tableVsArray  = regexp.MustCompile(`^key (\S+) should be a table, not a array table`)
)

// locateRepeat returns the 1-based line of the second definition of the key
// or table a go-toml "already defined" message names, or 0.
func locateRepeat(msg string, data []byte) int {
	lines := strings.Split(string(data), "\n")
	header := func(l string) (name string, array bool, ok bool) {
		l = strings.TrimSpace(l)
		if i := strings.Index(l, "#"); i >= 0 {
			l = strings.TrimSpace(l[:i])
		}
		if strings.HasPrefix(l, "[[") && strings.HasSuffix(l, "]]") {
			return strings.TrimSpace(l[2 : len(l)-2]), true, true
		}
		if strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]") {
			return strings.TrimSpace(l[1 : len(l)-1]), false, true
		}
		return "", false, false
	}
	if m := repeatedKey.FindStringSubmatch(msg); m != nil {
		key := m[1]
		seen := false
		for i, l := range lines {
			if _, _, ok := header(l); ok {
				seen = false // a new table: keys start afresh
				continue
			}
			k, _, ok := strings.Cut(strings.TrimSpace(l), "=")
			if ok && strings.Trim(strings.TrimSpace(k), `"'`) == key {
				if seen {
					return i + 1
				}
				seen = true
			}
		}
		return 0
	}
	m := repeatedTable.FindStringSubmatch(msg)
	wantArray := false
	if m == nil {
		m = tableVsArray.FindStringSubmatch(msg)
	}
	if m == nil {
		return 0
	}
	seen := false
	for i, l := range lines {
		name, array, ok := header(l)
		if !ok || name != m[1] || array != wantArray {
			if ok && name == m[1] {
				seen = true // [[T]] before [T]
			}
			continue
		}
		if seen {
			return i + 1
		}
		seen = true
	}
	return 0
}
