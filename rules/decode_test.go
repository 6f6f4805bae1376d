package rules

import "testing"

// The seed's unquoted "service: *.foo.com" is read as a wildcard only where
// it is a plain scalar. The same text inside a block scalar or a
// multi-line quoted string stays as written, and "*svc" naming an anchor
// defined in the file is the alias it is (not the wildcard "*svc", which
// would allow "evilsvc").
func TestUnquotedWildcardOnlyAsPlainScalar(t *testing.T) {
	const tail = "spec:\n  destination:\n    service: *.foo.com\n  ports: [{port: 80, protocol: HTTP}]\n"
	tests := []struct {
		name, doc         string
		ruleName, service string
	}{
		{"literal block", "kind: EgressRule\nmetadata:\n  name: |\n    service: *.foo.com\n    - service: *.bar.com # not a comment\n" + tail,
			"service: *.foo.com\n- service: *.bar.com # not a comment\n", "*.foo.com"},
		{"folded block", "kind: EgressRule\nmetadata:\n  name: >-\n    a\n    service: *.foo.com\n" + tail,
			"a service: *.foo.com", "*.foo.com"},
		{"double-quoted lines", "kind: EgressRule\nmetadata:\n  name: \"first\n    service: *.foo.com\"\n" + tail,
			"first service: *.foo.com", "*.foo.com"},
		{"single-quoted lines", "kind: EgressRule\nmetadata:\n  name: 'first\n    service: *.foo.com\n    last'\n" + tail,
			"first service: *.foo.com last", "*.foo.com"},
		{"flow text in a string", "kind: EgressRule\nmetadata: {name: \"{service: *.x.com}\"}\n" + tail,
			"{service: *.x.com}", "*.foo.com"},
		{"flow style", "kind: EgressRule\nmetadata: {name: n}\nspec: {destination: {service: *.foo.com}, ports: [{port: 80, protocol: HTTP}]}\n",
			"n", "*.foo.com"},
		{"alias to an anchor", "kind: EgressRule\nmetadata: {name: &svc api.foo.com}\nspec:\n  destination:\n    service: *svc\n  ports: [{port: 80, protocol: HTTP}]\n",
			"api.foo.com", "api.foo.com"},
		{"flow alias to an anchor", "kind: EgressRule\nmetadata: {name: &svc api.foo.com}\nspec: {destination: {service: *svc}, ports: [{port: 80, protocol: HTTP}]}\n",
			"api.foo.com", "api.foo.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _, err := Load(writeFile(t, t.TempDir(), "r.yaml", tt.doc))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if s.Len() != 1 {
				t.Fatalf("%d rules, want 1", s.Len())
			}
			r := s.Rules()[0]
			if r.Name != tt.ruleName || r.Service != tt.service {
				t.Errorf("name %q, service %q; want %q, %q", r.Name, r.Service, tt.ruleName, tt.service)
			}
			if _, ok := s.Match("evilsvc", 80); ok {
				t.Errorf("evilsvc allowed: the alias became a wildcard")
			}
		})
	}
}
