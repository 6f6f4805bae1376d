package rules

import (
	"strings"
	"sync/atomic"
	"testing"
)

type fixedSource struct{ s atomic.Pointer[Set] }

func (f *fixedSource) Current() *Set { return f.s.Load() }

// TestLayerPrecedenceAndConflicts: a scope's rules add to the global ones
// with the usual precedence, and one that gives a global port another
// protocol is left out (the global rule stays in force).
func TestLayerPrecedenceAndConflicts(t *testing.T) {
	global := mustCompile(t, &Rule{Name: "g", Service: "api.foo.com", Ports: []Port{{80, HTTP}}})
	own := mustCompile(t,
		&Rule{Name: "wild", Service: "*.foo.com", Ports: []Port{{80, HTTP}, {443, HTTPS}}},
		&Rule{Name: "hijack", Service: "api.foo.com", Ports: []Port{{80, HTTPS}}},
	)
	s, dropped := Layer(global, own)
	if len(dropped) != 1 || !strings.Contains(dropped[0], "hijack") {
		t.Fatalf("dropped %v, want the hijack rule", dropped)
	}
	for _, c := range []struct {
		host string
		port uint16
		rule string
	}{{"api.foo.com", 80, "g"}, {"x.foo.com", 80, "wild"}, {"api.foo.com", 443, "wild"}} {
		m, ok := s.Match(c.host, c.port)
		if !ok || m.Rule.Name != c.rule {
			t.Errorf("%s:%d matched %v %v, want %s", c.host, c.port, ok, m.Rule, c.rule)
		}
	}
	if m, _ := s.Match("api.foo.com", 80); m.Port.Protocol != HTTP {
		t.Errorf("api.foo.com:80 is %v, want the global HTTP", m.Port.Protocol)
	}
	if _, ok := global.Match("x.foo.com", 80); ok {
		t.Error("Layer changed the global Set")
	}
}

// TestLayeredFollowsBothSources: a new Set in either source is in force
// at the next Current, and an unchanged pair is not compiled again.
func TestLayeredFollowsBothSources(t *testing.T) {
	var g, o fixedSource
	g.s.Store(mustCompile(t, &Rule{Name: "g", Service: "g.test", Ports: []Port{{80, HTTP}}}))
	o.s.Store(mustCompile(t, &Rule{Name: "o", Service: "o.test", Ports: []Port{{80, HTTP}}}))
	var reports int
	l := NewLayered(&g, &o, func([]string) { reports++ })
	first := l.Current()
	if _, ok := first.Match("o.test", 80); !ok {
		t.Fatal("own rule not in force")
	}
	if l.Current() != first {
		t.Error("compiled again without a change")
	}
	g.s.Store(mustCompile(t, &Rule{Name: "g2", Service: "o.test", Ports: []Port{{80, HTTPS}}}))
	s := l.Current()
	if m, ok := s.Match("o.test", 80); !ok || m.Rule.Name != "g2" || reports != 1 {
		t.Errorf("after a global change: %v %v, reports %d; want g2 and one report", ok, m.Rule, reports)
	}
	if _, ok := s.Match("g.test", 80); ok {
		t.Error("the old global rule is still in force")
	}
}
