package rules

import (
	"crypto/sha256"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the decoder: it must never panic, every
// problem must name the file and say something, and whatever it accepts must
// be normalized and compiled.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(seedExample))
	f.Add([]byte("kind: EgressRule\nspec:\n  destination: {service: \"*-bar.foo.com\", name: x}\n  ports: [{port: 443, protocol: HTTPS}]\n  useEgressProxy: true\n---\nkind: Other\n"))
	f.Add([]byte(`[{"kind": "EgressRule", "spec": {"destination": {"service": "[2001:2::1]"}, "ports": [{"port": 80, "protocol": "grpc"}]}}]`))
	f.Add([]byte("kind: EgressRule\nspec:\n  destination: &d {service: a.test}\n  ports: *d\n"))
	f.Add([]byte("kind: EgressRule\nspec: {destination: {service: b..test}, ports: [{port: 0, protocol: x}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		const file = "fuzz.yaml"
		l := &loader{sum: sha256.New(), seen: map[string]bool{}}
		l.decodeFile(file, data)
		s, err := l.finish()
		var le *Error
		if err != nil {
			if !errors.As(err, &le) || len(le.Problems) == 0 {
				t.Fatalf("error %v is not an *Error with problems", err)
			}
			for _, p := range le.Problems {
				if p.File != file && p.File != "" || p.Line < 0 || p.Message == "" || strings.Contains(p.Message, "\n") {
					t.Fatalf("ill-formed problem %#v", p)
				}
			}
			return
		}
		for _, r := range s.Rules() {
			norm, _, _, nerr := normalizeService(r.Service)
			if nerr != nil || norm != r.Service {
				t.Fatalf("accepted service %q does not normalize to itself: %q, %v", r.Service, norm, nerr)
			}
			if len(r.Ports) == 0 || r.Name == "" || !strings.HasPrefix(r.Source, file+":") {
				t.Fatalf("accepted rule %+v", r)
			}
			for _, p := range r.Ports {
				if p.Number == 0 || p.Protocol.String() == "UNKNOWN" {
					t.Fatalf("accepted port %+v", p)
				}
				if m, ok := s.Match(r.Service, p.Number); r.Service[0] != '*' && r.Service[len(r.Service)-1] != '*' &&
					(!ok || m.Rule.Service != r.Service) {
					t.Fatalf("rule %+v does not match its own service on port %d: %+v %v", r, p.Number, m, ok)
				}
			}
		}
	})
}

// refMatch is the obviously-correct matcher Set.Match is checked against: a
// loop over every rule, scoring each matching domain that lists the port.
func refMatch(rules []*Rule, host string, port uint16) (*Rule, Port, bool) {
	h, ok := refCanonical(host)
	var best *Rule
	var bestPort Port
	bestScore := -1
	for _, r := range rules {
		svc, _, _, err := normalizeService(r.Service)
		if err != nil || !ok {
			continue
		}
		score := refScore(svc, h)
		if score <= bestScore {
			continue
		}
		for _, p := range r.Ports {
			if p.Number == port {
				best, bestPort, bestScore = r, p, score
				break
			}
		}
	}
	return best, bestPort, best != nil
}

// refScore ranks how service matches host: -1 not at all; higher is more
// specific (exact > longest suffix > longest prefix > "*").
func refScore(service, host string) int {
	const exact, suffix, prefix = 3 << 16, 2 << 16, 1 << 16
	switch {
	case service == "*":
		return 0
	case strings.HasPrefix(service, "*"):
		if s := service[1:]; len(host) > len(s) && strings.HasSuffix(host, s) {
			return suffix + len(s)
		}
	case strings.HasSuffix(service, "*"):
		if p := service[:len(service)-1]; len(host) > len(p) && strings.HasPrefix(host, p) {
			return prefix + len(p)
		}
	case service == host:
		return exact
	}
	return -1
}

// refCanonical is canonicalHost written plainly.
func refCanonical(host string) (string, bool) {
	name := host
	v6 := false
	if strings.HasPrefix(host, "[") && strings.Contains(host, "]") {
		name, v6 = host[1:strings.Index(host, "]")], true
	} else if strings.Count(host, ":") > 1 {
		v6 = true
	} else if i := strings.Index(host, ":"); i >= 0 {
		name = host[:i]
	}
	if a, err := netip.ParseAddr(name); v6 && err == nil && a.Is6() && a.Zone() == "" {
		return a.String(), true
	}
	name = strings.TrimSuffix(name, ".")
	var b strings.Builder
	for _, c := range []byte(name) {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String(), name != "" && len(name) <= maxHost
}

// FuzzMatch checks Set.Match against refMatch. services is a comma-separated
// list of rule services, each given the ports 80 (HTTP) and, for every
// second rule, 443 (HTTPS).
func FuzzMatch(f *testing.F) {
	f.Add("api.foo.com,*.foo.com,*-bar.foo.com,foo.*,foo.bar.*,*", "baz-bar.foo.com", uint16(80))
	f.Add("*.foo.com,api.foo.com", "API.foo.com.:8080", uint16(443))
	f.Add("*-bar.foo.com,*.com", "-bar.foo.com", uint16(80))
	f.Add("*.foo.com,*x.foo.com,*oo.com,foo.*,foo.b*,fo*", "ax.foo.com", uint16(80))
	f.Add("[2001:2::1],198.18.0.1,*", "[2001:0002::1]:80", uint16(80))
	f.Add("bücher.example,*.example", "xn--bcher-kva.example", uint16(443))
	f.Fuzz(func(t *testing.T, services, host string, port uint16) {
		var rs []*Rule
		for i, svc := range strings.Split(services, ",") {
			if _, _, _, err := normalizeService(svc); err != nil {
				continue
			}
			r := &Rule{Name: svc, Service: svc, Ports: []Port{{80, HTTP}}}
			if i%2 == 1 {
				r.Ports = append(r.Ports, Port{443, HTTPS})
			}
			rs = append(rs, r)
		}
		s, err := Compile(rs)
		if err != nil {
			t.Fatalf("Compile(%q): %v", services, err)
		}
		wantRule, wantPort, wantOK := refMatch(rs, host, port)
		m, ok := s.Match(host, port)
		if ok != wantOK || m.Rule != wantRule || m.Port != wantPort {
			var got, want string
			if ok {
				got = m.Rule.Service
			}
			if wantOK {
				want = wantRule.Service
			}
			t.Fatalf("Match(%q, %d) with %q = %q %v, reference says %q %v", host, port, services, got, ok, want, wantOK)
		}
	})
}
