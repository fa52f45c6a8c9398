package host

import "fmt"

// Bounds on a pipeline file, checked before the TOML parser sees it: the
// parser's time grows steeply with nesting (100,000 nested arrays took over
// 20 s), and no real pipeline file comes near either bound.
const (
	MaxFileBytes = 1 << 20 // a pipeline file is a few KiB
	MaxNesting   = 32      // arrays and inline tables inside one another
)

// checkBounds refuses a file larger than MaxFileBytes or with arrays or
// inline tables nested deeper than MaxNesting. It scans once, skipping
// strings and comments, so brackets inside them do not count.
func checkBounds(data []byte) error {
	if len(data) > MaxFileBytes {
		return fmt.Errorf("the file is larger than %d bytes (1 MiB), the most a pipeline file may be", MaxFileBytes)
	}
	depth, line, lineStart := 0, 1, 0
	newline := func(i int) { line, lineStart = line+1, i+1 }
	for i := 0; i < len(data); i++ {
		switch c := data[i]; c {
		case '\n':
			newline(i)
		case '#':
			for i+1 < len(data) && data[i+1] != '\n' {
				i++
			}
		case '"', '\'':
			if i+2 < len(data) && data[i+1] == c && data[i+2] == c {
				// Multi-line string: up to the closing triple quote.
				for i += 3; i < len(data); i++ {
					switch {
					case data[i] == '\n':
						newline(i)
					case c == '"' && data[i] == '\\' && i+1 < len(data):
						i++
						if data[i] == '\n' {
							newline(i)
						}
					case data[i] == c && i+2 < len(data) && data[i+1] == c && data[i+2] == c:
						i += 2
						goto closed
					}
				}
			closed:
				continue
			}
			// One-line string: up to its quote or the end of the line.
			for i++; i < len(data) && data[i] != c && data[i] != '\n'; i++ {
				if c == '"' && data[i] == '\\' && i+1 < len(data) && data[i+1] != '\n' {
					i++
				}
			}
			if i < len(data) && data[i] == '\n' {
				newline(i)
			}
		case '[', '{':
			if depth++; depth > MaxNesting {
				return fmt.Errorf("line %d, column %d: arrays or inline tables nested deeper than %d", line, i-lineStart+1, MaxNesting)
			}
		case ']', '}':
			if depth > 0 {
				depth--
			}
		}
	}
	return nil
}
