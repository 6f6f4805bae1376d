package rules

import (
	"fmt"
	"strings"
	"testing"
)

func rule(name, service string, ports ...Port) *Rule {
	return &Rule{Name: name, Service: service, Ports: ports}
}

func p(n uint16, proto Protocol) Port { return Port{Number: n, Protocol: proto} }

func mustCompile(t testing.TB, rs ...*Rule) *Set {
	t.Helper()
	s, err := Compile(rs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// precedenceRules holds one rule per kind of domain, so that each test case
// shows which one wins.
var precedenceRules = []*Rule{
	rule("exact", "api.foo.com", p(80, HTTP), p(443, HTTPS)),
	rule("suffix-dot", "*.foo.com", p(80, HTTP)),
	rule("suffix-bar", "*-bar.foo.com", p(80, HTTP)),
	rule("suffix-long", "*.eu.foo.com", p(80, HTTP)),
	rule("prefix-foo", "foo.*", p(80, HTTP)),
	rule("prefix-long", "foo.bar.*", p(80, HTTP)),
	rule("any", "*", p(8080, GRPC)),
	rule("v6", "[2001:2::1]", p(80, HTTP)),
	rule("v4", "198.18.0.1", p(80, HTTP2)),
	rule("idna", "Bücher.Example", p(80, HTTP)),
	rule("fqdn", "Trailing.Dot.Test.", p(80, HTTP)),
}

func TestMatchPrecedence(t *testing.T) {
	s := mustCompile(t, precedenceRules...)
	tests := []struct {
		host string
		port uint16
		want string // rule name, "" for deny
	}{
		{"api.foo.com", 80, "exact"},
		{"API.Foo.COM", 80, "exact"},
		{"api.foo.com.", 80, "exact"},
		{"api.foo.com:8443", 80, "exact"}, // the Host's port is ignored
		{"api.foo.com.:80", 443, "exact"},
		{"x.foo.com", 80, "suffix-dot"},
		{"a.b.foo.com", 80, "suffix-dot"}, // '*' spans dots
		{"foo.com", 80, "prefix-foo"},     // not suffix-dot: "*" is non-empty
		{".foo.com", 80, ""},
		{"baz-bar.foo.com", 80, "suffix-bar"}, // the seed's example
		{"-bar.foo.com", 80, "suffix-dot"},    // not suffix-bar: '*' is non-empty
		{"x.eu.foo.com", 80, "suffix-long"},   // longest suffix wins
		{"eu.foo.com", 80, "suffix-dot"},
		{"foo.bar.baz", 80, "prefix-long"}, // longest prefix wins
		{"foo.org", 80, "prefix-foo"},
		{"foo.", 80, ""}, // "foo." is "foo" without its trailing dot
		{"foo.bar.", 80, "prefix-foo"},
		{"foo.foo.com", 80, "suffix-dot"}, // suffix beats prefix
		{"anything.test", 8080, "any"},
		{"api.foo.com", 8080, "any"},
		{"anything.test", 80, ""},
		{"[2001:2::1]:80", 80, "v6"},
		{"[2001:0002:0::1]", 80, "v6"},
		{"2001:2::1", 80, "v6"},
		{"[2001:2::2]:80", 80, ""},
		{"198.18.0.1:80", 80, "v4"},
		{"xn--bcher-kva.example", 80, "idna"},
		{"XN--BCHER-KVA.EXAMPLE", 80, "idna"},
		{"trailing.dot.test", 80, "fqdn"},
		{"", 80, ""},
		{":80", 80, ""},
		{strings.Repeat("a", 300) + ".foo.com", 80, ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s:%d", tt.host, tt.port), func(t *testing.T) {
			m, ok := s.Match(tt.host, tt.port)
			got := ""
			if ok {
				got = m.Rule.Name
				if m.Port.Number != tt.port {
					t.Errorf("Match port = %d, want %d", m.Port.Number, tt.port)
				}
			}
			if got != tt.want {
				t.Errorf("Match(%q, %d) = %q, want %q", tt.host, tt.port, got, tt.want)
			}
		})
	}
}

// TestMatchMixedWildcards mixes wildcard keys at a label boundary
// ("*.foo.com", "foo.*") with keys inside a label ("*x.foo.com", "foo.b*"),
// which the matcher looks up in two different walks: the longest still wins.
func TestMatchMixedWildcards(t *testing.T) {
	s := mustCompile(t,
		rule("dot-suffix", "*.foo.com", p(80, HTTP)),
		rule("inner-suffix-long", "*x.foo.com", p(80, HTTP)),
		rule("inner-suffix-short", "*oo.com", p(80, HTTP)),
		rule("dot-suffix-long", "*.a.x.foo.com", p(80, HTTP)),
		rule("dot-prefix", "foo.*", p(80, HTTP)),
		rule("inner-prefix-long", "foo.b*", p(80, HTTP)),
		rule("inner-prefix-short", "fo*", p(80, HTTP)),
		rule("dot-prefix-long", "foo.bar.*", p(80, HTTP)),
	)
	tests := []struct{ host, want string }{
		{"ax.foo.com", "inner-suffix-long"},
		{"b.foo.com", "dot-suffix"},
		{"zoo.com", "inner-suffix-short"},
		{"foo.com", "inner-suffix-short"},
		{"b.a.x.foo.com", "dot-suffix-long"},
		{"a.x.foo.com", "inner-suffix-long"},
		{"foo.bar", "inner-prefix-long"},
		{"foo.car", "dot-prefix"},
		{"fox", "inner-prefix-short"},
		{"foo.bar.baz", "dot-prefix-long"},
		{"foo.bar.", "inner-prefix-long"},
	}
	for _, tt := range tests {
		m, ok := s.Match(tt.host, 80)
		if !ok || m.Rule.Name != tt.want {
			t.Errorf("Match(%q) = %+v %v, want %q", tt.host, m.Rule, ok, tt.want)
		}
	}
}

// TestMatchPerPort pins the per-(host, port) decision: the most specific
// domain that lists the port wins, so a more specific rule on another port
// does not hide a wildcard rule on this one.
func TestMatchPerPort(t *testing.T) {
	s := mustCompile(t,
		rule("wild", "*.foo.com", p(80, HTTP)),
		rule("api", "api.foo.com", p(443, HTTPS)),
	)
	tests := []struct {
		host  string
		port  uint16
		want  string
		proto Protocol
	}{
		{"api.foo.com", 443, "api", HTTPS},
		{"api.foo.com", 80, "wild", HTTP},
		{"www.foo.com", 443, "", 0}, // allowed on 80 only
		{"api.foo.com", 8080, "", 0},
	}
	for _, tt := range tests {
		m, ok := s.Match(tt.host, tt.port)
		got := ""
		if ok {
			got = m.Rule.Name
		}
		if got != tt.want || ok && m.Port.Protocol != tt.proto {
			t.Errorf("Match(%q, %d) = %q %v, want %q %v", tt.host, tt.port, got, m.Port.Protocol, tt.want, tt.proto)
		}
	}
}

func TestMatchUseEgressProxy(t *testing.T) {
	r := rule("via-proxy", "api.foo.com", p(443, HTTPS))
	r.UseEgressProxy = true
	s := mustCompile(t, r)
	m, ok := s.Match("api.foo.com", 443)
	if !ok || !m.UseEgressProxy || m.Rule != r {
		t.Fatalf("Match = %+v %v, want the rule with UseEgressProxy", m, ok)
	}
}

func TestCompileRejects(t *testing.T) {
	tests := []struct {
		name  string
		rules []*Rule
		want  string
	}{
		{"no ports", []*Rule{rule("a", "a.test")}, "ports: none"},
		{"port 0", []*Rule{rule("a", "a.test", p(0, HTTP))}, "port 0"},
		{"no protocol", []*Rule{rule("a", "a.test", p(80, 0))}, "no valid protocol"},
		{"bad service", []*Rule{rule("a", "a.*.test", p(80, HTTP))}, "in the middle"},
		{"conflict", []*Rule{rule("a", "a.test", p(80, HTTP)), rule("b", "A.test.", p(80, HTTPS))}, `conflicts with rule "a"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(tt.rules)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Compile error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	s := mustCompile(t, precedenceRules...)
	hosts := []string{"API.foo.com:443", "x.eu.foo.com", "foo.bar.baz.", "[2001:2::1]:80", "none.test", "anything.test"}
	for _, h := range hosts {
		if n := testing.AllocsPerRun(100, func() { s.Match(h, 80) }); n != 0 {
			t.Errorf("Match(%q) allocates %v times per call", h, n)
		}
	}
}

func TestNilSet(t *testing.T) {
	var s *Set
	if _, ok := s.Match("a.test", 80); ok || s.Len() != 0 || s.Rules() != nil || s.Files() != nil {
		t.Fatal("a nil Set is not empty")
	}
}
