package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runEgressd calls dispatch in-process as main would and returns stdout,
// stderr and the exit code.
func runEgressd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	err := dispatch(context.Background(), args, &out, &errb)
	code = exitCode(err, &errb) // prints the error, as main does: before stderr is read
	return out.String(), errb.String(), code
}

// unsetEnv removes an environment variable for the test's duration.
func unsetEnv(t *testing.T, name string) {
	t.Helper()
	t.Setenv(name, "") // restores the old value on cleanup
	os.Unsetenv(name)
}

func writeRules(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const (
	goodRule  = "kind: EgressRule\nmetadata: {name: good}\nspec:\n  destination: {service: api.good.test}\n  ports: [{port: 443, protocol: https}]\n"
	proxyRule = "kind: EgressRule\nmetadata: {name: via-proxy}\nspec:\n  destination: {service: p.test}\n  ports: [{port: 80, protocol: HTTP}]\n  useEgressProxy: true\n"
	badRule   = "kind: EgressRule\nspec:\n  destination: {service: a.*.test}\n  ports:\n  - {port: 0, protocol: ftp}\n"
)

func TestCheck(t *testing.T) {
	unsetEnv(t, "EGRESSD_EGRESS_PROXY")
	good := writeRules(t, map[string]string{"a.yaml": goodRule, "b.yml": goodRule, "notes.txt": "not read"})
	bad := writeRules(t, map[string]string{"a.yaml": goodRule, "b.yaml": badRule, "c.yaml": badRule})
	proxy := writeRules(t, map[string]string{"p.yaml": proxyRule})
	none := writeRules(t, map[string]string{"empty.yaml": "", "other.yaml": "kind: ConfigMap\nmetadata: {name: x}\n"})
	tests := []struct {
		name string
		args []string
		code int
		out  []string // substrings of stdout, in order
	}{
		{"valid dir", []string{"check", good}, 0, []string{"2 files, 2 rules: OK\n"}},
		{"valid file", []string{"check", filepath.Join(good, "a.yaml")}, 0, []string{"1 file, 1 rule: OK\n"}},
		{"seed example", []string{"check", "../../examples/foo-egress-rule.yaml"}, 0, []string{
			`foo-egress-rule.yaml:6: spec.destination.service: *.foo.com is unquoted: egressd reads it as written, but kubectl reads an alias and refuses the manifest; quote it for kubectl apply: service: "*.foo.com"`,
			`foo-egress-rule.yaml:1: for kubectl apply (an EgressRule object, deploy/crd-egressrule.yaml) also add apiVersion: config.istio.io/v1alpha2`,
			"1 file, 1 rule: OK (2 warnings)\n"}},
		{"examples", []string{"check", "../../examples"}, 0, []string{"rules: OK"}},
		{"invalid", []string{"check", bad}, 1, []string{
			filepath.Join(bad, "b.yaml") + `:3: spec.destination.service: "a.*.test" has a '*' in the middle`,
			filepath.Join(bad, "b.yaml") + ":5: spec.ports[0].port: 0 is out of range",
			filepath.Join(bad, "b.yaml") + `:5: spec.ports[0].protocol: "ftp" is not a protocol`,
			filepath.Join(bad, "c.yaml") + ":3:",
			"6 problems in 2 files\n"}},
		{"missing path", []string{"check", filepath.Join(good, "nope.yaml")}, 1, []string{"nope.yaml: cannot read", "1 problem in 1 file\n"}},
		{"warning", []string{"check", proxy}, 0, []string{
			"warning: --egress-proxy: not given, but 1 rule uses useEgressProxy (the first: via-proxy at " + filepath.Join(proxy, "p.yaml") + ":1)",
			"1 file, 1 rule: OK (1 warning)\n"}},
		{"no rules: empty file", []string{"check", filepath.Join(none, "empty.yaml")}, 0, []string{
			"warning: no EgressRule documents found: every request will be denied\n", "1 file, 0 rules: OK (1 warning)\n"}},
		{"no rules: other kinds only", []string{"check", none}, 0, []string{
			"warning: " + filepath.Join(none, "other.yaml") + ":1: kind: ConfigMap is not an EgressRule",
			"warning: no EgressRule documents found: every request will be denied\n", "2 files, 0 rules: OK (2 warnings)\n"}},
		{"proxy given", []string{"check", "--egress-proxy", "http://proxy.test:3128", proxy}, 0, []string{"1 file, 1 rule: OK\n"}},
		{"proxy empty", []string{"check", "--egress-proxy=", proxy}, 1, []string{"--egress-proxy: empty, but 1 rule uses useEgressProxy", "1 problem\n"}},
		{"proxy invalid", []string{"check", "--egress-proxy", "socks5://x:1", good}, 1, []string{`--egress-proxy: "socks5://x:1" must be http:// or https://`}},
		{"proxy without host", []string{"check", "--egress-proxy", "http://", good}, 1, []string{"must be http:// or https:// with a host"}},
		{"proxy with a path", []string{"check", "--egress-proxy", "http://p:3128/x", good}, 1, []string{"must have no path or query"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runEgressd(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out, errOut)
			}
			rest := out
			for _, want := range tt.out {
				i := strings.Index(rest, want)
				if i < 0 {
					t.Fatalf("stdout:\n%s\nwant (in order) %q", out, want)
				}
				rest = rest[i+len(want):]
			}
		})
	}
}

func TestCheckEnvProxy(t *testing.T) {
	proxy := writeRules(t, map[string]string{"p.yaml": proxyRule})
	t.Setenv("EGRESSD_EGRESS_PROXY", "")
	if out, _, code := runEgressd(t, "check", proxy); code != 1 || !strings.Contains(out, "--egress-proxy: empty") {
		t.Errorf("EGRESSD_EGRESS_PROXY empty: exit %d, stdout:\n%s", code, out)
	}
	t.Setenv("EGRESSD_EGRESS_PROXY", "https://proxy.test")
	if out, _, code := runEgressd(t, "check", proxy); code != 0 {
		t.Errorf("EGRESSD_EGRESS_PROXY set: exit %d, stdout:\n%s", code, out)
	}
}

func TestCheckUsage(t *testing.T) {
	for _, args := range [][]string{{"check"}, {"check", "--no-such-flag", "x"}} {
		_, errOut, code := runEgressd(t, args...)
		if code != 2 || !strings.Contains(errOut, "usage: egressd check") {
			t.Errorf("%q: exit %d, stderr:\n%s", args, code, errOut)
		}
	}
	if out, _, code := runEgressd(t, "check", "-h"); code != 0 || out != "" {
		t.Errorf("check -h: exit %d", code)
	}
}

// An error returned to main reaches stderr: runEgressd shows it as a user would.
func TestRunEgressdShowsTheError(t *testing.T) {
	unsetEnv(t, "EGRESSD_EGRESS_PROXY")
	unsetEnv(t, "EGRESSD_CGROUP")
	proxy := writeRules(t, map[string]string{"p.yaml": proxyRule})
	_, errOut, code := runEgressd(t, "run", "--rules", proxy, "--admin", "127.0.0.1:0")
	want := "egressd: rules: 1 rule(s) have useEgressProxy but no egress proxy is configured"
	if code != 1 || !strings.Contains(errOut, want) {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and %q", code, errOut, want)
	}
}

func TestExitErrorFromCheck(t *testing.T) {
	bad := writeRules(t, map[string]string{"b.yaml": badRule})
	err := dispatch(context.Background(), []string{"check", bad}, &bytes.Buffer{}, &bytes.Buffer{})
	var ee exitError
	if !errors.As(err, &ee) || ee.code != exitFailure {
		t.Fatalf("dispatch error = %v, want exitError{1}", err)
	}
}
