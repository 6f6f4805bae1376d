package rules

import (
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/net/idna"
)

// maxHost bounds the canonical host a lookup handles. DNS names are at most
// 253 bytes and an IPv6 literal far less, so a longer Host cannot name a
// service a rule could list; Match denies it.
const maxHost = 255

// canonicalHost writes the canonical form of a Host header value (or an
// :authority) into buf and returns it: without a port, without brackets
// around an IPv6 literal, without one trailing dot, ASCII lower-cased, an
// IPv6 literal in netip's canonical text. ok is false for an empty or too
// long host. It does not allocate.
func canonicalHost(buf *[maxHost]byte, host string) ([]byte, bool) {
	name, v6 := splitHost(host)
	if v6 && strings.IndexByte(name, '%') < 0 {
		if a, err := netip.ParseAddr(name); err == nil && a.Is6() {
			return a.AppendTo(buf[:0]), true
		}
	}
	if n := len(name); n > 0 && name[n-1] == '.' {
		name = name[:n-1]
	}
	if name == "" || len(name) > maxHost {
		return nil, false
	}
	b := buf[:len(name)]
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	return b, true
}

// CanonicalHost is the canonical form of a Host header value or an
// :authority, as Match compares it with the rules: without a port, without
// brackets around an IPv6 literal, without one trailing dot, ASCII
// lower-cased, an IPv6 literal in netip's canonical text ("[2001:2::0:1]:80"
// and "2001:2::1" are one host). It is "" for an empty host or one longer
// than any name a rule could list. It allocates only when the canonical form
// is not a substring of host.
func CanonicalHost(host string) string {
	var buf [maxHost]byte
	b, ok := canonicalHost(&buf, host)
	if !ok {
		return ""
	}
	off := 0
	if host[0] == '[' {
		off = 1
	}
	if len(host) >= off+len(b) && host[off:off+len(b)] == string(b) {
		return host[off : off+len(b)]
	}
	return string(b)
}

// HostOnly strips a port and IPv6 brackets from an authority, keeping its
// case ("Example.com:80" is "Example.com", "[2001:2::1]:443" is
// "2001:2::1"); a bare IPv6 literal, which cannot carry a port, is kept
// whole. Set.Match is given it; CanonicalHost is the form rules compare.
func HostOnly(authority string) string {
	if authority == "" {
		return ""
	}
	if authority[0] == '[' {
		if i := strings.IndexByte(authority, ']'); i > 0 {
			return authority[1:i]
		}
		return authority
	}
	if i := strings.LastIndexByte(authority, ':'); i >= 0 && strings.IndexByte(authority, ':') == i {
		return authority[:i]
	}
	return authority
}

// splitHost removes a port from host. v6 reports an IPv6 literal: one in
// brackets ("[2001:2::1]:80"), or a bare one (more than one colon), which
// cannot carry a port.
func splitHost(host string) (name string, v6 bool) {
	if len(host) > 0 && host[0] == '[' {
		if i := strings.IndexByte(host, ']'); i > 0 {
			return host[1:i], true
		}
		return host, false
	}
	i := strings.IndexByte(host, ':')
	if i < 0 {
		return host, false
	}
	if strings.IndexByte(host[i+1:], ':') >= 0 {
		return host, true
	}
	return host[:i], false
}

// The kinds of domain a rule's service may name, from the most specific.
const (
	kindExact  = iota // "api.foo.com"
	kindSuffix        // "*.foo.com", "*-bar.foo.com": the key is the part after '*'
	kindPrefix        // "foo.*": the key is the part before '*'
	kindAny           // "*"
)

// normalizeService validates a destination.service and returns its
// canonical form (lower-case, IDNA A-labels, no trailing dot, canonical
// IPv6 text), its kind and its index key. The error says what is wrong and
// how to fix it, without the field name.
func normalizeService(s string) (norm string, kind int, key string, err error) {
	if s == "" {
		return "", 0, "", fmt.Errorf("missing; name the external host, e.g. api.example.com or *.example.com")
	}
	if strings.TrimSpace(s) != s {
		return "", 0, "", fmt.Errorf("%q has surrounding spaces; remove them", s)
	}
	if s[0] == '[' || strings.Count(s, ":") > 1 {
		name, _ := splitHost(s)
		a, perr := netip.ParseAddr(name)
		if perr != nil || !a.Is6() || a.Zone() != "" || name != s && "["+name+"]" != s {
			return "", 0, "", fmt.Errorf("%q is not a valid IPv6 address; write it like 2001:db8::1, without a port", s)
		}
		n := a.String()
		return n, kindExact, n, nil
	}
	if strings.Contains(s, ":") {
		return "", 0, "", fmt.Errorf("%q has a port; write the host alone and list the port under ports", s)
	}
	if len(s) > 1 && s[len(s)-1] == '.' {
		s = s[:len(s)-1] // a fully qualified name: the trailing dot is implied
	}
	switch n := strings.Count(s, "*"); {
	case s == "*":
		return "*", kindAny, "", nil
	case n > 1:
		return "", 0, "", fmt.Errorf("%q has more than one '*'; Envoy allows one wildcard, leading (*.foo.com, *-bar.foo.com) or trailing (foo.*)", s)
	case n == 1 && s[0] == '*':
		kind, key = kindSuffix, s[1:]
	case n == 1 && s[len(s)-1] == '*':
		kind, key = kindPrefix, s[:len(s)-1]
	case n == 1:
		return "", 0, "", fmt.Errorf("%q has a '*' in the middle; Envoy allows a wildcard only at the start (*.foo.com) or the end (foo.*)", s)
	default:
		kind, key = kindExact, s
	}
	key, err = normalizeName(key, kind)
	if err != nil {
		return "", 0, "", fmt.Errorf("%q %w", s, err)
	}
	switch kind {
	case kindSuffix:
		return "*" + key, kind, key, nil
	case kindPrefix:
		return key + "*", kind, key, nil
	}
	return key, kind, key, nil
}

// normalizeName lower-cases and IDNA-converts the literal part of a service
// name and checks its characters and labels. For a suffix wildcard the first
// label may be empty or partial ("*.foo.com" → ".foo.com", "*-bar.foo.com" →
// "-bar.foo.com"); for a prefix wildcard the last one ("foo.*" → "foo.").
func normalizeName(name string, kind int) (string, error) {
	labels := strings.Split(name, ".")
	for i, l := range labels {
		wild := kind == kindSuffix && i == 0 || kind == kindPrefix && i == len(labels)-1
		if l == "" {
			if wild {
				continue
			}
			return "", fmt.Errorf("has an empty label (two dots in a row, or a leading or trailing dot); remove the extra dot")
		}
		if !isASCII(l) && wild {
			return "", fmt.Errorf("has non-ASCII characters in the label that holds the '*'; a wildcard cannot be IDNA-converted, write the whole label in its xn-- form")
		}
		if !isASCII(l) {
			a, err := idna.Lookup.ToASCII(l)
			if err != nil {
				return "", fmt.Errorf("has the label %q, not a valid internationalized name (%v)", l, err)
			}
			l = a
		}
		l = strings.ToLower(l)
		if len(l) > 63 {
			return "", fmt.Errorf("has the label %q, longer than the 63 bytes DNS allows", l)
		}
		for j := 0; j < len(l); j++ {
			c := l[j]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("has the character %q, not allowed in a host name; use letters, digits, '-' and '.'", c)
			}
		}
		labels[i] = l
	}
	out := strings.Join(labels, ".")
	if len(out) > 253 {
		return "", fmt.Errorf("is longer than 253 bytes; DNS names cannot be")
	}
	return out, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
