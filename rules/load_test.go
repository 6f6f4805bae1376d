package rules

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// seedExample is the example of the reference page (seed/egress-rules.md),
// pasted verbatim with its indentation.
const seedExample = `    kind: EgressRule
    metadata:
      name: foo-egress-rule
    spec:
      destination:
        service: *.foo.com
      ports:
        - port: 80
          protocol: http
        - port: 443
          protocol: https
`

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadSeedExample(t *testing.T) {
	for name, content := range map[string]string{
		"indented": seedExample,
		"flush":    strings.ReplaceAll(seedExample, "\n    ", "\n")[4:],
	} {
		t.Run(name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "seed.yaml", content)
			s, warns, err := Load(path)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			// Two warnings: kubectl would refuse the unquoted wildcard, and
			// it needs an apiVersion.
			if len(warns) != 2 || !strings.Contains(warns[0].String(), `seed.yaml:6: spec.destination.service: *.foo.com is unquoted: egressd reads it as written, but kubectl reads an alias and refuses the manifest; quote it for kubectl apply: service: "*.foo.com"`) ||
				!strings.HasSuffix(warns[1].String(), `seed.yaml:1: for kubectl apply (an EgressRule object, deploy/crd-egressrule.yaml) also add apiVersion: config.istio.io/v1alpha2`) {
				t.Errorf("warnings: %v, want the kubectl quoting one and the apiVersion one", warns)
			}
			m, ok := s.Match("www.foo.com", 443)
			if !ok || m.Rule.Name != "foo-egress-rule" || m.Port.Protocol != HTTPS {
				t.Fatalf("Match(www.foo.com, 443) = %+v %v", m, ok)
			}
			if m.Rule.Source != path+":1" {
				t.Errorf("Source = %q, want %q", m.Rule.Source, path+":1")
			}
			if _, ok := s.Match("foo.com", 80); ok {
				t.Errorf("foo.com matched *.foo.com")
			}
		})
	}
}

func TestLoadForms(t *testing.T) {
	tests := []struct {
		name    string
		content string
		rules   int
		warn    string // a substring of the warnings, "" for none
	}{
		{"istio crd", "apiVersion: config.istio.io/v1alpha2\nkind: EgressRule\nmetadata:\n  name: a\n  namespace: default\n  labels: {x: y}\nspec:\n  destination:\n    service: a.test\n  ports:\n  - port: 80\n    protocol: HTTP\n", 1, ""},
		{"no metadata", "kind: EgressRule\nspec:\n  destination: {service: a.test}\n  ports: [{port: 80, protocol: grpc}]\n", 1, ""},
		{"multi doc", "---\nkind: EgressRule\nspec: {destination: {service: a.test}, ports: [{port: 80, protocol: HTTP}]}\n---\n---\nkind: EgressRule\nspec: {destination: {service: b.test}, ports: [{port: 80, protocol: HTTP}]}\n", 2, ""},
		{"json", `{"kind": "EgressRule", "metadata": {"name": "j"}, "spec": {"destination": {"service": "*.j.test"}, "ports": [{"port": 443, "protocol": "HTTPS"}], "useEgressProxy": true}}`, 1, ""},
		{"json list", `[{"kind": "EgressRule", "spec": {"destination": {"service": "a.test"}, "ports": [{"port": 80, "protocol": "HTTP"}]}}]`, 1, ""},
		{"other kind", "kind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\n---\nkind: EgressRule\nspec: {destination: {service: a.test}, ports: [{port: 80, protocol: HTTP}]}\n", 1, "1: kind: ConfigMap is not an EgressRule; document skipped"},
		{"ignored destination fields", "kind: EgressRule\nspec:\n  destination:\n    service: a.test\n    name: n\n    namespace: ns\n    domain: d\n    labels: {a: b}\n  ports: [{port: 80, protocol: HTTP}]\n", 1, "5: spec.destination.name: ignored"},
		{"other apiVersion", "apiVersion: v9\nkind: EgressRule\nspec: {destination: {service: a.test}, ports: [{port: 80, protocol: HTTP}]}\n", 1, `1: apiVersion: "v9" is not`},
		{"quoted wildcard and comment", "kind: EgressRule\nspec:\n  destination:\n    service: *  # everything\n  ports: [{port: 80, protocol: HTTP}]\n", 1, `:4: spec.destination.service: * is unquoted`},
		{"identical duplicates", "kind: EgressRule\nspec: {destination: {service: a.test}, ports: [{port: 80, protocol: HTTP}, {port: 80, protocol: http}]}\n---\nkind: EgressRule\nspec: {destination: {service: A.test}, ports: [{port: 80, protocol: HTTP}]}\n", 2, ""},
		{"anchors", "kind: EgressRule\nspec:\n  destination: {service: a.test}\n  ports: &p [{port: 80, protocol: HTTP}]\n---\nkind: EgressRule\nspec:\n  destination: {service: b.test}\n  ports: *p\n", 2, ""},
		{"empty file", "", 0, noRulesWarning},
		{"only other kinds", "kind: ConfigMap\nmetadata: {name: x}\n---\nkind: ServiceEntry\nspec: {}\n", 0, noRulesWarning},
		{"flow style wildcard", "kind: EgressRule\nspec: {destination: {service: *.foo.com}, ports: [{port: 80, protocol: HTTP}]}\n", 1, `quote it for kubectl apply: service: "*.foo.com"`},
		{"quoted wildcard: no kubectl warning", "kind: EgressRule\nspec: {destination: {service: \"*.foo.com\"}, ports: [{port: 80, protocol: HTTP}]}\n", 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "r.yaml", tt.content)
			s, warns, err := Load(path)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if s.Len() != tt.rules {
				t.Errorf("Len = %d, want %d", s.Len(), tt.rules)
			}
			var ws []string
			for _, w := range warns {
				ws = append(ws, w.String())
			}
			got := strings.Join(ws, "\n")
			if tt.warn == "" && got != "" || !strings.Contains(got, tt.warn) {
				t.Errorf("warnings:\n%s\nwant one containing %q", got, tt.warn)
			}
		})
	}
}

// TestLoadProblems covers every validation rule: each case names the
// problems Load must report, as "line: field: message prefix".
func TestLoadProblems(t *testing.T) {
	const ok = "kind: EgressRule\nspec:\n  destination:\n    service: ok.test\n  ports:\n  - port: 80\n    protocol: HTTP\n"
	tests := []struct {
		name    string
		content string
		want    []string
	}{
		{"no kind", "spec: {}\n", []string{"1: kind: missing; add kind: EgressRule"}},
		{"not a mapping", "just a string\n", []string{"1: a document must be a mapping"}},
		{"no spec", "kind: EgressRule\n", []string{"1: spec: missing"}},
		{"empty spec", "kind: EgressRule\nspec:\n", []string{"2: spec: must be a mapping of fields, found nothing"}},
		{"port not a mapping", "kind: EgressRule\nspec:\n  destination: {service: a.test}\n  ports: [80]\n", []string{"4: spec.ports[0]: must be a mapping of fields, found the value \"80\""}},
		{"unknown top field", "kind: EgressRule\nspc: {}\n", []string{"2: spc: unknown field", "1: spec: missing"}},
		{"no destination", "kind: EgressRule\nspec:\n  ports: [{port: 80, protocol: HTTP}]\n", []string{"3: spec.destination: missing"}},
		{"no service", "kind: EgressRule\nspec:\n  destination: {name: x}\n  ports: [{port: 80, protocol: HTTP}]\n", []string{"3: spec.destination.service: missing"}},
		{"empty service", "kind: EgressRule\nspec:\n  destination: {service: \"\"}\n  ports: [{port: 80, protocol: HTTP}]\n", []string{"3: spec.destination.service: empty"}},
		{"service not a string", "kind: EgressRule\nspec:\n  destination: {service: [a]}\n  ports: [{port: 80, protocol: HTTP}]\n", []string{"3: spec.destination.service: must be a string"}},
		{"no ports", "kind: EgressRule\nspec:\n  destination: {service: a.test}\n", []string{"3: spec.ports: missing"}},
		{"empty ports", "kind: EgressRule\nspec:\n  destination: {service: a.test}\n  ports: []\n", []string{"4: spec.ports: empty"}},
		{"ports not a list", "kind: EgressRule\nspec:\n  destination: {service: a.test}\n  ports: {port: 80}\n", []string{"4: spec.ports: must be a list"}},
		{"port 0", "kind: EgressRule\nspec:\n  destination: {service: a.test}\n  ports:\n  - {port: 0, protocol: HTTP}\n", []string{"5: spec.ports[0].port: 0 is out of range"}},
		{"port 65536", "kind: EgressRule\nspec:\n  destination: {service: a.test}\n  ports:\n  - {port: 65536, protocol: HTTP}\n", []string{"5: spec.ports[0].port: 65536 is out of range"}},
		{"negative port", "kind: EgressRule\nspec:\n  destination: {service: a.test}\n  ports:\n  - {port: -1, protocol: HTTP}\n", []string{"5: spec.ports[0].port: -1 is out of range"}},
		{"quoted port", "kind: EgressRule\nspec:\n  destination: {service: a.test}\n  ports:\n  - {port: \"80\", protocol: HTTP}\n", []string{"5: spec.ports[0].port: must be a number"}},
		{"no port", "kind: EgressRule\nspec:\n  destination: {service: a.test}\n  ports:\n  - {protocol: HTTP}\n", []string{"5: spec.ports[0].port: missing"}},
		{"no protocol", "kind: EgressRule\nspec:\n  destination: {service: a.test}\n  ports:\n  - {port: 80}\n", []string{"5: spec.ports[0].protocol: missing"}},
		{"bad protocol", "kind: EgressRule\nspec:\n  destination: {service: a.test}\n  ports:\n  - {port: 80, protocol: TCP}\n", []string{`5: spec.ports[0].protocol: "TCP" is not a protocol; use one of HTTP, HTTPS, GRPC, HTTP2`}},
		{"empty protocol", "kind: EgressRule\nspec:\n  destination: {service: a.test}\n  ports:\n  - {port: 80, protocol: \"\"}\n", []string{`5: spec.ports[0].protocol: "" is not a protocol; use one of HTTP, HTTPS, GRPC, HTTP2`}},
		{"unknown port field", "kind: EgressRule\nspec:\n  destination: {service: a.test}\n  ports:\n  - {port: 80, protocol: HTTP, name: web}\n", []string{"5: spec.ports[0].name: unknown field"}},
		{"same port twice in a rule", "kind: EgressRule\nspec:\n  destination: {service: a.test}\n  ports:\n  - {port: 80, protocol: HTTP}\n  - {port: 80, protocol: GRPC}\n", []string{"6: spec.ports[1]: port 80 is listed again with protocol GRPC, but spec.ports[0] (line 5) says HTTP"}},
		{"useEgressProxy not bool", "kind: EgressRule\nspec:\n  destination: {service: a.test}\n  ports: [{port: 80, protocol: HTTP}]\n  useEgressProxy: yes\n", []string{"5: spec.useEgressProxy: must be true or false"}},
		{"snake case field", "kind: EgressRule\nspec:\n  destination: {service: a.test}\n  ports: [{port: 80, protocol: HTTP}]\n  use_egress_proxy: true\n", []string{"5: spec.use_egress_proxy: unknown field; did you mean useEgressProxy?"}},
		{"duplicate key", "kind: EgressRule\nspec:\n  destination: {service: a.test}\n  ports: [{port: 80, protocol: HTTP}]\n  ports: [{port: 81, protocol: HTTP}]\n", []string{"5: spec.ports: appears twice"}},
		{"unknown metadata field", "kind: EgressRule\nmetadata: {name: a, nmae: b}\nspec: {destination: {service: a.test}, ports: [{port: 80, protocol: HTTP}]}\n", []string{"2: metadata.nmae: unknown field"}},
		{"undefined alias", "kind: EgressRule\nspec:\n  destination: {service: a.test}\n  ports: *nope\n", []string{`4: invalid YAML: *nope reads as an alias to an undefined anchor; quote a wildcard: "*nope"`}},
		{"syntax error", "kind: EgressRule\nspec:\n  destination: {service: [a\n", []string{"2: invalid YAML"}},
		{"two problems in two documents", "kind: EgressRule\nspec: {destination: {service: a.test}, ports: [{port: 0, protocol: HTTP}]}\n---\nkind: EgressRule\nspec: {destination: {service: b..test}, ports: [{port: 80, protocol: HTTP}]}\n", []string{"2: spec.ports[0].port: 0 is out of range", "5: spec.destination.service: \"b..test\" has an empty label"}},
		{"conflicting protocols", ok + "---\nkind: EgressRule\nmetadata: {name: other}\nspec:\n  destination: {service: OK.test.}\n  ports:\n  - port: 80\n    protocol: HTTPS\n", []string{"14: spec.ports[0]: port 80 of ok.test is HTTPS here but HTTP in %s:6 (rule %s:1); give both rules the same protocol"}},
		{"conflicting egress proxy", ok + "---\nkind: EgressRule\nspec:\n  destination: {service: ok.test}\n  ports: [{port: 80, protocol: HTTP}]\n  useEgressProxy: true\n", []string{"12: spec.ports[0]: port 80 of ok.test has useEgressProxy: true here but false in %s:6"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "r.yaml", tt.content)
			_, _, err := Load(path)
			var le *Error
			if !errors.As(err, &le) {
				t.Fatalf("Load error = %v, want *Error", err)
			}
			var got []string
			for _, p := range le.Problems {
				got = append(got, p.String())
			}
			for _, w := range tt.want {
				w = path + ":" + strings.ReplaceAll(w, "%s", path)
				if !hasPrefixIn(got, w) {
					t.Errorf("problems:\n%s\nwant one starting with\n%s", strings.Join(got, "\n"), w)
				}
			}
			if len(got) != len(tt.want) {
				t.Errorf("got %d problems, want %d:\n%s", len(got), len(tt.want), strings.Join(got, "\n"))
			}
		})
	}
}

func hasPrefixIn(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// TestServiceValidation covers the destination.service forms Envoy allows
// and refuses, and their normalization.
func TestServiceValidation(t *testing.T) {
	tests := []struct {
		in, want string // want "" for invalid
	}{
		{"api.foo.com", "api.foo.com"},
		{"API.Foo.Com.", "api.foo.com"},
		{"*.foo.com", "*.foo.com"},
		{"*-bar.foo.com", "*-bar.foo.com"},
		{"*foo.com", "*foo.com"},
		{"foo.*", "foo.*"},
		{"*", "*"},
		{"bücher.example", "xn--bcher-kva.example"},
		{"*.BÜCHER.example", "*.xn--bcher-kva.example"},
		{"*ü.example", ""},
		{"198.18.0.1", "198.18.0.1"},
		{"2001:0002::1", "2001:2::1"},
		{"[2001:2::1]", "2001:2::1"},
		{"under_score.test", "under_score.test"},
		{"", ""},
		{"**.foo.com", ""},
		{"*.*.foo.com", ""},
		{"a.*.com", ""},
		{"*.foo.*", ""},
		{"foo.com:443", ""},
		{"[2001:2::1]:80", ""},
		{"2001:2::zz", ""},
		{"a..b", ""},
		{".foo.com", ""},
		{"foo bar.com", ""},
		{" foo.com", ""},
		{"foo/bar", ""},
		{strings.Repeat("a", 64) + ".com", ""},
		{strings.Repeat("a.", 127) + "com", ""},
	}
	for _, tt := range tests {
		got, _, _, err := normalizeService(tt.in)
		if tt.want == "" && err == nil {
			t.Errorf("normalizeService(%q) = %q, want an error", tt.in, got)
		}
		if tt.want != "" && (err != nil || got != tt.want) {
			t.Errorf("normalizeService(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// TestNoKubectlWarningInBlockScalars: a rule file inside a ConfigMap's
// block scalar is text to kubectl, which applies it as written: no quoting
// warning there (there was one), but one for the same rule as a file.
func TestNoKubectlWarningInBlockScalars(t *testing.T) {
	rule := "kind: EgressRule\nspec:\n  destination:\n    service: *.foo.com\n  ports: [{port: 80, protocol: HTTP}]\n"
	cm := "kind: ConfigMap\nmetadata: {name: r}\ndata:\n  r.yaml: |\n" + indentLines(rule, "    ") + "  s.yaml: >\n" + indentLines(rule, "    ")
	_, warns, _ := Load(writeFile(t, t.TempDir(), "cm.yaml", cm))
	for _, w := range warns {
		if strings.Contains(w.Message, "kubectl") {
			t.Errorf("ConfigMap: %v", w)
		}
	}
	_, warns, err := Load(writeFile(t, t.TempDir(), "r.yaml", rule))
	if err != nil || len(warns) != 2 || warns[0].Line != 4 || !strings.Contains(warns[0].Message, `quote it for kubectl apply: service: "*.foo.com"`) ||
		warns[1].Line != 1 || !strings.HasSuffix(warns[1].Message, "also add apiVersion: config.istio.io/v1alpha2 and metadata.name") {
		t.Errorf("rule file: %v, %v; want the quoting warning at line 4 and what else kubectl needs at line 1", warns, err)
	}
}

func indentLines(s, pad string) string {
	return pad + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n"+pad) + "\n"
}
