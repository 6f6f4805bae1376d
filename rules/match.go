package rules

import (
	"fmt"
	"slices"
	"strings"
)

// Set is a compiled, immutable set of rules. It is safe for concurrent use.
type Set struct {
	rules   []*Rule
	files   []string // the files the rules were read from, for reporting
	denyAll bool     // the files hold a DenyAllEgress document: no rules on purpose

	exact      map[string]*domain // "api.foo.com"
	suffix     map[string]*domain // "*.foo.com" under ".foo.com"
	suffixDots lenSet             // lengths of the suffix keys that start with '.'
	suffixLens []int              // distinct lengths of the other suffix keys, longest first
	prefix     map[string]*domain // "foo.*" under "foo."
	prefixDots lenSet             // lengths of the prefix keys that end with '.'
	prefixLens []int              // distinct lengths of the other prefix keys, longest first
	any        *domain            // "*"
}

// domain holds, for one normalized service name, the rule that allows each
// port, sorted by port number.
type domain struct {
	ports []portRule
}

type portRule struct {
	port Port
	rule *Rule
}

// allows is find on a domain that may be nil (a key not in the index).
func (d *domain) allows(port uint16) (portRule, bool) {
	if d == nil {
		return portRule{}, false
	}
	return d.find(port)
}

// find returns the rule allowing port, by binary search.
func (d *domain) find(port uint16) (portRule, bool) {
	lo, hi := 0, len(d.ports)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if d.ports[m].port.Number < port {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(d.ports) && d.ports[lo].port.Number == port {
		return d.ports[lo], true
	}
	return portRule{}, false
}

// Compile builds a Set from rules. It normalizes each rule's service for
// the index (the Rules themselves are not modified and are the ones Match
// returns) and refuses what Load would refuse: an invalid service, no ports,
// a port 0 or unknown protocol, and two rules giving one port of one
// service different protocols or egress proxy settings.
func Compile(rs []*Rule) (*Set, error) {
	s := &Set{
		rules:  rs,
		exact:  make(map[string]*domain),
		suffix: make(map[string]*domain),
		prefix: make(map[string]*domain),
	}
	var errs []string
	for _, r := range rs {
		if err := s.add(r); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", ruleRef(r), err))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("compile rules: %s", strings.Join(errs, "; "))
	}
	s.suffixDots, s.suffixLens = keyLens(s.suffix, func(k string) bool { return k[0] == '.' })
	s.prefixDots, s.prefixLens = keyLens(s.prefix, func(k string) bool { return k[len(k)-1] == '.' })
	return s, nil
}

func ruleRef(r *Rule) string {
	if r.Source != "" {
		return r.Source
	}
	return fmt.Sprintf("rule %q", r.Name)
}

// add indexes one rule.
func (s *Set) add(r *Rule) error {
	_, kind, key, err := normalizeService(r.Service)
	if err != nil {
		return fmt.Errorf("service: %w", err)
	}
	if len(r.Ports) == 0 {
		return fmt.Errorf("ports: none; list at least one")
	}
	var d *domain
	switch kind {
	case kindAny:
		if s.any == nil {
			s.any = &domain{}
		}
		d = s.any
	default:
		m := s.exact
		if kind == kindSuffix {
			m = s.suffix
		} else if kind == kindPrefix {
			m = s.prefix
		}
		if d = m[key]; d == nil {
			d = &domain{}
			m[key] = d
		}
	}
	for _, p := range r.Ports {
		if p.Number == 0 {
			return fmt.Errorf("ports: port 0 is not a valid port")
		}
		if p.Protocol.String() == "UNKNOWN" {
			return fmt.Errorf("ports: port %d has no valid protocol", p.Number)
		}
		i, found := slices.BinarySearchFunc(d.ports, p.Number, func(pr portRule, n uint16) int { return int(pr.port.Number) - int(n) })
		if !found {
			d.ports = slices.Insert(d.ports, i, portRule{port: p, rule: r})
			continue
		}
		if prev := d.ports[i]; prev.port.Protocol != p.Protocol || prev.rule.UseEgressProxy != r.UseEgressProxy {
			return fmt.Errorf("ports: port %d of %s conflicts with %s", p.Number, r.Service, ruleRef(prev.rule))
		}
	}
	return nil
}

// keyLens lists the distinct lengths of m's keys that are not at a label
// boundary, longest first, and collects the lengths of those that are.
func keyLens(m map[string]*domain, atDot func(string) bool) (dots lenSet, lens []int) {
	for k := range m {
		if atDot(k) {
			dots.add(len(k))
		} else if !slices.Contains(lens, len(k)) {
			lens = append(lens, len(k))
		}
	}
	slices.Sort(lens)
	slices.Reverse(lens)
	return dots, lens
}

// lenSet is a set of key lengths (keys are at most 253 bytes, hosts looked
// up at most maxHost), so that the dot walks skip the lengths no key has.
type lenSet [4]uint64

func (b *lenSet) add(n int) { b[n>>6&3] |= 1 << (n & 63) }

func (b *lenSet) has(n int) bool { return n < 256 && b[n>>6]&(1<<(n&63)) != 0 }

func (b *lenSet) empty() bool { return *b == lenSet{} }

// Len reports the number of rules. A nil Set has none.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.rules)
}

// Rules returns the rules in the order they were read. Do not modify them.
func (s *Set) Rules() []*Rule {
	if s == nil {
		return nil
	}
	return s.rules
}

// Files returns the files the rules were read from (none for a Set built by
// Compile).
func (s *Set) Files() []string {
	if s == nil {
		return nil
	}
	return s.files
}

// Match reports the rule that allows host on port, if any. host may carry a
// port (ignored: the port that counts is the port argument, the connection's
// original destination port), a trailing dot, any case, and an IPv6 literal
// in brackets. See the package doc for the precedence. It does not allocate.
// A nil Set matches nothing.
func (s *Set) Match(host string, port uint16) (Match, bool) {
	var buf [maxHost]byte
	h, ok := canonicalHost(&buf, host)
	if !ok || s == nil {
		return Match{}, false
	}
	if pr, ok := s.lookup(h, port); ok {
		return Match{Rule: pr.rule, Port: pr.port, UseEgressProxy: pr.rule.UseEgressProxy}, true
	}
	return Match{}, false
}

// lookup walks the domains matching h from the most specific to the least
// and returns the first one that allows port.
func (s *Set) lookup(h []byte, port uint16) (portRule, bool) {
	if d := s.exact[string(h)]; d != nil {
		if pr, ok := d.find(port); ok {
			return pr, true
		}
	}
	if pr, ok := s.suffixMatch(h, port); ok {
		return pr, true
	}
	if pr, ok := s.prefixMatch(h, port); ok {
		return pr, true
	}
	if s.any != nil {
		return s.any.find(port)
	}
	return portRule{}, false
}

// suffixMatch finds the longest suffix wildcard key matching h whose domain
// allows port. Keys that start a label (".foo.com", the common "*.foo.com")
// can only match where h has a dot, so they are looked up at h's dots;
// the others ("-bar.foo.com") at each distinct length they have. Each walk
// goes from the longest candidate down and stops at its first hit; the
// longer of the two hits wins. '*' stands for at least one byte, so a key
// never covers all of h.
func (s *Set) suffixMatch(h []byte, port uint16) (portRule, bool) {
	var dotHit portRule
	dotLen := 0
	if !s.suffixDots.empty() {
		for i := 1; i < len(h); i++ {
			if h[i] != '.' || !s.suffixDots.has(len(h)-i) {
				continue
			}
			if pr, ok := s.suffix[string(h[i:])].allows(port); ok {
				dotHit, dotLen = pr, len(h)-i
				break
			}
		}
	}
	for _, n := range s.suffixLens {
		if n <= dotLen {
			break
		}
		if n >= len(h) {
			continue
		}
		if pr, ok := s.suffix[string(h[len(h)-n:])].allows(port); ok {
			return pr, true
		}
	}
	return dotHit, dotLen > 0
}

// prefixMatch is suffixMatch for prefix wildcard keys: those that end a
// label ("foo." of "foo.*") are looked up at h's dots, from the right.
func (s *Set) prefixMatch(h []byte, port uint16) (portRule, bool) {
	var dotHit portRule
	dotLen := 0
	if !s.prefixDots.empty() {
		for i := len(h) - 2; i >= 0; i-- {
			if h[i] != '.' || !s.prefixDots.has(i+1) {
				continue
			}
			if pr, ok := s.prefix[string(h[:i+1])].allows(port); ok {
				dotHit, dotLen = pr, i+1
				break
			}
		}
	}
	for _, n := range s.prefixLens {
		if n <= dotLen {
			break
		}
		if n >= len(h) {
			continue
		}
		if pr, ok := s.prefix[string(h[:n])].allows(port); ok {
			return pr, true
		}
	}
	return dotHit, dotLen > 0
}
