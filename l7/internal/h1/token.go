package h1

import "bytes"

// Small byte-level helpers of the HTTP/1.x parser (RFC 9110 5.6).

// tokens yields the non-empty comma-separated elements of a list value,
// trimmed of optional whitespace.
func tokens(v []byte) func(yield func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for len(v) > 0 {
			i := 0
			for i < len(v) && v[i] != ',' {
				i++
			}
			tok := TrimOWS(v[:i])
			if i < len(v) {
				i++
			}
			v = v[i:]
			if len(tok) > 0 && !yield(tok) {
				return
			}
		}
	}
}

// hasEmptyElement reports whether the list v has an element that is empty
// or only whitespace (an empty v is one).
func hasEmptyElement(v []byte) bool {
	for {
		i := bytes.IndexByte(v, ',')
		if i < 0 {
			return len(TrimOWS(v)) == 0
		}
		if len(TrimOWS(v[:i])) == 0 {
			return true
		}
		v = v[i+1:]
	}
}

func TrimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold compares ASCII case-insensitively.
func equalFold[T ~string | ~[]byte, U ~string | ~[]byte](a T, b U) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// parseDecimal parses a non-negative decimal of at most 18 digits.
func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// isTokenChar reports whether b may appear in a token (RFC 9110 5.6.2).
func isTokenChar(b byte) bool {
	return tokenTable[b]
}

var tokenTable = asciiTable("!#$%&'*+-.^_`|~")

// asciiTable marks ASCII letters and digits, and the bytes of extra.
func asciiTable(extra string) (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range extra {
		t[c] = true
	}
	return t
}
