package rules

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// Source is anything that holds rules in force: a Reloader, a Layered, the
// rules of a Kubernetes namespace. Current never returns nil.
type Source interface{ Current() *Set }

// Layer compiles base's rules followed by own's into one Set: the rules of
// a scope (a Kubernetes namespace, a cgroup given its own files) on top of
// the global ones, with the usual precedence among all of them. An own rule
// that conflicts with one already in (one port of one service with another
// protocol or useEgressProxy setting) is left out, and described in
// dropped: the global rules cannot be changed from a scope. A nil or empty
// own gives base itself, and the other way round.
func Layer(base, own *Set) (s *Set, dropped []string) {
	if own.Len() == 0 && base != nil {
		return base, nil
	}
	if base.Len() == 0 && own != nil {
		return own, nil
	}
	s = &Set{
		rules:  make([]*Rule, 0, base.Len()+own.Len()),
		exact:  make(map[string]*domain),
		suffix: make(map[string]*domain),
		prefix: make(map[string]*domain),
		files:  slices.Concat(base.Files(), own.Files()),
	}
	for _, r := range base.Rules() {
		if err := s.add(r); err == nil { // a compiled Set's rules always fit together
			s.rules = append(s.rules, r)
		}
	}
	for _, r := range own.Rules() {
		if err := s.fits(r); err != nil {
			dropped = append(dropped, fmt.Sprintf("%s: %v", ruleRef(r), err))
			continue
		}
		_ = s.add(r)
		s.rules = append(s.rules, r)
	}
	s.suffixDots, s.suffixLens = keyLens(s.suffix, func(k string) bool { return k[0] == '.' })
	s.prefixDots, s.prefixLens = keyLens(s.prefix, func(k string) bool { return k[len(k)-1] == '.' })
	return s, dropped
}

// fits reports what add would refuse in r, without adding anything.
func (s *Set) fits(r *Rule) error {
	_, kind, key, err := normalizeService(r.Service)
	if err != nil {
		return fmt.Errorf("service: %w", err)
	}
	if len(r.Ports) == 0 {
		return fmt.Errorf("ports: none; list at least one")
	}
	d := s.any
	switch kind {
	case kindAny:
	case kindSuffix:
		d = s.suffix[key]
	case kindPrefix:
		d = s.prefix[key]
	default:
		d = s.exact[key]
	}
	for _, p := range r.Ports {
		if p.Number == 0 || p.Protocol.String() == "UNKNOWN" {
			return fmt.Errorf("ports: port %d has no valid number or protocol", p.Number)
		}
		if prev, ok := d.allows(p.Number); ok && (prev.port.Protocol != p.Protocol || prev.rule.UseEgressProxy != r.UseEgressProxy) {
			return fmt.Errorf("ports: port %d of %s conflicts with %s, which the global rules give %s", p.Number, r.Service, ruleRef(prev.rule), prev.port.Protocol)
		}
	}
	return nil
}

// Layered keeps the Layer of two Sources current: the rules of one scope.
// Current compiles again only when either source moved to another Set,
// so a request pays two loads and two comparisons.
type Layered struct {
	base, own Source
	// onDropped, if not nil, hears about the own rules left out of a new
	// layer (Layer's dropped), once per layer.
	onDropped func(dropped []string)
	mu        sync.Mutex // serializes compiling
	cur       atomic.Pointer[layered]
}

type layered struct{ base, own, set *Set }

// NewLayered returns the rules of own on top of base. onDropped may be nil.
func NewLayered(base, own Source, onDropped func(dropped []string)) *Layered {
	return &Layered{base: base, own: own, onDropped: onDropped}
}

// Current returns base's and own's rules in force, layered.
func (l *Layered) Current() *Set {
	b, o := l.base.Current(), l.own.Current()
	if c := l.cur.Load(); c != nil && c.base == b && c.own == o {
		return c.set
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.cur.Load(); c != nil && c.base == b && c.own == o {
		return c.set
	}
	s, dropped := Layer(b, o)
	l.cur.Store(&layered{base: b, own: o, set: s})
	if len(dropped) > 0 && l.onDropped != nil {
		l.onDropped(dropped)
	}
	return s
}

// Own returns the scope's own rules in force (without the base's).
func (l *Layered) Own() *Set { return l.own.Current() }
