package recording

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"unicode/utf8"
)

// incompleteTail returns how many bytes at the end of p begin a UTF-8
// sequence that the next bytes may complete (0 to 3).
func incompleteTail(p []byte) int {
	// A sequence is at most 4 bytes: look at the last 3 for its start.
	for n := 1; n <= 3 && n <= len(p); n++ {
		b := p[len(p)-n]
		if utf8.RuneStart(b) {
			if !utf8.FullRune(p[len(p)-n:]) {
				return n
			}
			return 0
		}
	}
	return 0
}

// chunk returns how many bytes of p, at most max and at least one rune,
// end on a rune boundary.
func chunk(p []byte, max int) int {
	if len(p) <= max {
		return len(p)
	}
	n := max
	for n > 0 && !utf8.RuneStart(p[n]) {
		n--
	}
	if n == 0 {
		return max // not UTF-8 anyway
	}
	return n
}

const hexDigits = "0123456789abcdef"

// writeJSONString writes p as a JSON string: valid UTF-8 as it is
// (escaped where JSON requires), every byte that is not part of valid
// UTF-8 as U+FFFD. Unlike json.Marshal it needs no copy of p.
func writeJSONString(w *bufio.Writer, p []byte) {
	w.WriteByte('"')
	start := 0 // of the run of bytes not yet written that need no escape
	for i := 0; i < len(p); {
		c := p[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			w.Write(p[start:i])
			switch c {
			case '"', '\\':
				w.WriteByte('\\')
				w.WriteByte(c)
			case '\n':
				w.WriteString(`\n`)
			case '\r':
				w.WriteString(`\r`)
			case '\t':
				w.WriteString(`\t`)
			default:
				w.WriteString(`\u00`)
				w.WriteByte(hexDigits[c>>4])
				w.WriteByte(hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(p[i:])
		if r == utf8.RuneError && size == 1 {
			w.Write(p[start:i])
			w.WriteString("\ufffd")
			i++
			start = i
			continue
		}
		i += size
	}
	w.Write(p[start:])
	w.WriteByte('"')
}

// newID returns a new recording id: "rec-" and 17 random hex digits, in
// the shape of EC2 ids.
func newID() string {
	var b [9]byte
	rand.Read(b[:])
	return "rec-" + hex.EncodeToString(b[:])[:17]
}
