package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestExplain(t *testing.T) {
	dir := writeRules(t, map[string]string{"good.yaml": goodRule, "proxy.yaml": proxyRule, "seed.yaml": mustRead(t, "../../examples/foo-egress-rule.yaml")})
	out, errOut, code := runEgressd(t, "explain", "--rules", dir,
		"api.good.test:443", "API.GOOD.TEST.:443", "api.good.test", "p.test", "www.foo.com:443", "foo.com", "evil.test:8080", "[2001:2::1]:443")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	want := []string{
		"allow api.good.test:443 rule=good service=api.good.test port=443 protocol=HTTPS egress-proxy=no source=" + filepath.Join(dir, "good.yaml") + ":1",
		"allow API.GOOD.TEST.:443 rule=good service=api.good.test port=443 protocol=HTTPS egress-proxy=no source=" + filepath.Join(dir, "good.yaml") + ":1",
		"deny  api.good.test:80 no egress rule allows api.good.test on port 80 (allowed on 443/HTTPS)",
		"allow p.test:80 rule=via-proxy service=p.test port=80 protocol=HTTP egress-proxy=yes source=" + filepath.Join(dir, "proxy.yaml") + ":1",
		"allow www.foo.com:443 rule=foo-egress-rule service=*.foo.com port=443 protocol=HTTPS egress-proxy=no source=" + filepath.Join(dir, "seed.yaml") + ":1",
		"deny  foo.com:80 no egress rule allows foo.com on port 80",
		"deny  evil.test:8080 no egress rule allows evil.test on port 8080",
		"deny  [2001:2::1]:443 no egress rule allows 2001:2::1 on port 443",
	}
	if got := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestExplainErrors(t *testing.T) {
	unsetEnv(t, "EGRESSD_RULES")
	good := writeRules(t, map[string]string{"good.yaml": goodRule})
	bad := writeRules(t, map[string]string{"bad.yaml": badRule})
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no rules flag", []string{"explain", "a.test"}, 2, "usage: egressd explain"},
		{"no hosts", []string{"explain", "--rules", good}, 2, "usage: egressd explain"},
		{"bad port", []string{"explain", "--rules", good, "a.test:99999"}, 2, `"a.test:99999": want HOST[:PORT] with a port from 1 to 65535`},
		{"bad v6", []string{"explain", "--rules", good, "[2001:2::1"}, 2, "want HOST[:PORT]"},
		{"bad flag", []string{"explain", "--bogus"}, 2, "flag provided but not defined"},
		// A host that looks like a flag: the usage says how to give it.
		{"host like a flag", []string{"explain", "--rules", good, "-x.good.test"}, 2, "A HOST beginning with '-' must follow '--'"},
		{"invalid rules", []string{"explain", "--rules", bad, "a.test"}, 1, filepath.Join(bad, "bad.yaml") + ":5: spec.ports[0].port: 0 is out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runEgressd(t, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.stderr) || out != "" {
				t.Errorf("exit %d (want %d)\nstdout:\n%s\nstderr:\n%s\nwant stderr containing %q", code, tt.code, out, errOut, tt.stderr)
			}
		})
	}
}

// After "--", a host beginning with '-' is a host.
func TestExplainHostAfterDoubleDash(t *testing.T) {
	good := writeRules(t, map[string]string{"good.yaml": goodRule})
	out, errOut, code := runEgressd(t, "explain", "--rules", good, "--", "-x.good.test")
	if want := "deny  -x.good.test:80 no egress rule allows -x.good.test on port 80\n"; code != 0 || out != want {
		t.Errorf("exit %d, stdout %q, want %q\nstderr:\n%s", code, out, want, errOut)
	}
}

func TestExplainEnvRules(t *testing.T) {
	t.Setenv("EGRESSD_RULES", writeRules(t, map[string]string{"good.yaml": goodRule}))
	out, _, code := runEgressd(t, "explain", "api.good.test:443")
	if code != 0 || !strings.HasPrefix(out, "allow api.good.test:443 rule=good ") {
		t.Errorf("exit %d, stdout:\n%s", code, out)
	}
}

// TestCheckBinary runs the built binary, so the exit codes are the ones a
// shell sees.
func TestCheckBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "egressd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	good := writeRules(t, map[string]string{"good.yaml": goodRule})
	bad := writeRules(t, map[string]string{"bad.yaml": badRule})
	for _, tt := range []struct {
		args []string
		code int
	}{
		{[]string{"check", good}, 0},
		{[]string{"check", bad}, 1},
		{[]string{"check"}, 2},
		{[]string{"explain", "--rules", good, "evil.test"}, 0},
		{[]string{"explain", "--rules", bad, "evil.test"}, 1},
	} {
		cmd := exec.Command(bin, tt.args...)
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "EGRESSD_") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tt.code {
			t.Errorf("egressd %q: exit %d, want %d", tt.args, code, tt.code)
		}
	}
}
