package rules

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// benchRules builds n rules shaped like a large real list: 80% exact names,
// 15% suffix wildcards, 5% prefix wildcards, over a few hundred parent
// domains, with one or two ports each.
func benchRules(n int) []*Rule {
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	rs := make([]*Rule, 0, n)
	for i := range n {
		parent := fmt.Sprintf("svc%d.example%d.com", rng.IntN(n/4+1), rng.IntN(300))
		var svc string
		switch k := rng.IntN(100); {
		case k < 80:
			svc = fmt.Sprintf("api%d.%s", i, parent)
		case k < 95:
			svc = fmt.Sprintf("*.r%d.%s", i, parent)
		default:
			svc = fmt.Sprintf("internal%d.*", i)
		}
		r := &Rule{Name: fmt.Sprintf("rule-%d", i), Service: svc, Ports: []Port{{443, HTTPS}}}
		if i%2 == 0 {
			r.Ports = append(r.Ports, Port{80, HTTP})
		}
		rs = append(rs, r)
	}
	return rs
}

// benchHosts picks lookups against rs: exact hits, wildcard hits (suffix and
// prefix), and misses, in a fixed rotation.
func benchHosts(rs []*Rule) []string {
	var hosts []string
	for i := 0; len(hosts) < 64; i++ {
		r := rs[(i*7919)%len(rs)]
		svc := r.Service
		switch {
		case svc[0] == '*':
			svc = "Deep.Name" + svc[1:] + ":443"
		case svc[len(svc)-1] == '*':
			svc = svc[:len(svc)-1] + "corp.example"
		default:
			svc = svc + ".:443"
		}
		hosts = append(hosts, svc, fmt.Sprintf("miss%d.nowhere.example.org", i))
	}
	return hosts
}

func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{10, 1000, 100000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			rs := benchRules(n)
			s, err := Compile(rs)
			if err != nil {
				b.Fatal(err)
			}
			hosts := benchHosts(rs)
			b.ReportAllocs()
			b.ResetTimer()
			hits := 0
			for i := 0; b.Loop(); i++ {
				if _, ok := s.Match(hosts[i%len(hosts)], 443); ok {
					hits++
				}
			}
			if hits == 0 {
				b.Fatal("no lookup matched")
			}
		})
	}
}

func BenchmarkCompile(b *testing.B) {
	rs := benchRules(100000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(rs); err != nil {
			b.Fatal(err)
		}
	}
}

// TestBenchHosts keeps the benchmark honest: its hit hosts match their rule
// on 443, its misses match nothing.
func TestBenchHosts(t *testing.T) {
	rs := benchRules(1000)
	s := mustCompile(t, rs...)
	hosts := benchHosts(rs)
	for i, h := range hosts {
		_, ok := s.Match(h, 443)
		if ok != (i%2 == 0) {
			t.Errorf("Match(%q, 443) = %v", h, ok)
		}
		if r, _, want := refMatch(rs, h, 443); want != ok || ok && r == nil {
			t.Errorf("reference disagrees on %q", h)
		}
	}
}

// BenchmarkMatchManyWildcardLengths is the matcher's worst case: suffix
// wildcards of every length from 5 to 64 bytes, and a 64-byte host that
// misses all of them, so that every length is looked up.
func BenchmarkMatchManyWildcardLengths(b *testing.B) {
	var rs []*Rule
	for n := 14; n <= 64; n++ {
		svc := fmt.Sprintf("*.%s.example.com", strings.Repeat("x", n-13))
		rs = append(rs, &Rule{Name: svc, Service: svc, Ports: []Port{{443, HTTPS}}})
	}
	s, err := Compile(rs)
	if err != nil {
		b.Fatal(err)
	}
	host := strings.Repeat("a", 40) + ".miss.example.com:443"
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := s.Match(host, 443); ok {
			b.Fatal("matched")
		}
	}
}
