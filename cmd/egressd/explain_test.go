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

// TestExplainLog: access-log lines explained against the rules now: what
// was logged, what the rules decide now, and why they differ.
func TestExplainLog(t *testing.T) {
	unsetEnv(t, "EGRESSD_RULES")
	dir := writeRules(t, map[string]string{"good.yaml": goodRule})
	src := filepath.Join(dir, "good.yaml") + ":1"
	log := strings.Join([]string{
		`time=x level=INFO msg="egressd running" mode=audit`,
		`time=x level=INFO msg=request host=b.test port=80 protocol=http/1.1 upstream=http rule="" decision=would-deny status=200 reason="no egress rule allows the host and port (audit mode: forwarded)"`,
		`{"time":"x","level":"INFO","msg":"request","host":"api.good.test:443","port":443,"protocol":"http/1.1","upstream":"http","rule":"","decision":"would-deny","status":502}`,
		`time=x level=INFO msg=request host=api.good.test port=443 protocol=http/1.1 upstream=http rule=old decision=allow status=200`,
		`time=x level=INFO msg=request host=api.good.test port=80 protocol=h2c upstream=http rule=old decision=allow status=200`,
		`time=x level=INFO msg=request host=t.test port=443 protocol=tls-passthrough upstream=tls rule="" decision=would-deny status=0`,
		`time=x level=INFO msg=request host=l.test port=80 protocol=http/1.1 upstream=http rule="" decision=would-deny status=403 reason="no egress rule allows the host and port (audit mode: forwarded); upstream address 127.0.0.1 of l.test refused: loopback"`,
		`time=x level=INFO msg=request host="" port=443 protocol=tls-passthrough upstream="" rule="" decision=deny status=0`,
		`time=x level=INFO msg=request host="a b" port=80 protocol=http/1.1 upstream="" rule="" decision=invalid status=400 reason="malformed request head"`,
		`time=x level=INFO msg=request host=b.test port=eighty`,
	}, "\n")
	out, errOut, code := runEgressdIn(t, log, "explain", "--rules", dir, "--log", "-")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	want := []string{
		"stdin:2 b.test:80 http/1.1 logged would-deny, now deny: no egress rule allows b.test on port 80; in enforce mode: 403",
		"stdin:3 api.good.test:443 http/1.1 logged would-deny, now allow by rule=good service=api.good.test port=443 protocol=HTTPS egress-proxy=no source=" + src + "; a rule allows it now that did not then",
		"stdin:4 api.good.test:443 http/1.1 logged allow by rule old, now allow by rule=good service=api.good.test port=443 protocol=HTTPS egress-proxy=no source=" + src + "; it was sent in clear; the port is now HTTPS: egressd would originate TLS",
		"stdin:5 api.good.test:80 h2c logged allow by rule old, now deny: no egress rule allows api.good.test on port 80 (allowed on 443/HTTPS); the rules that allowed it then no longer do",
		"stdin:6 t.test:443 tls-passthrough logged would-deny, now deny: no egress rule allows t.test on port 443; in enforce mode: a TLS access_denied alert",
		`stdin:7 l.test:80 http/1.1 logged would-deny, now deny: no egress rule allows l.test on port 80; in enforce mode: 403; then: "upstream address 127.0.0.1 of l.test refused: loopback"`,
		"stdin:8 :443 tls-passthrough logged deny: no host name (a TLS hello without SNI, or no Host): refused whatever the rules",
		`stdin:9 "a b:80" http/1.1 logged invalid: refused before any rule was asked ("malformed request head"); no rule changes that`,
		"stdin:10 not an access-log line: request line without protocol",
	}
	if got := strings.TrimSuffix(out, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("stdout:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}

	out, _, code = runEgressdIn(t, "", "explain", "--rules", dir, "--log-line", `{"level":"INFO","msg":"request","host":"api.good.test","port":443,"protocol":"grpc","decision":"allow","upstream":"https","rule":"good"}`)
	if want := "line:1 api.good.test:443 grpc logged allow by rule good, now allow by rule=good service=api.good.test port=443 protocol=HTTPS egress-proxy=no source=" + src + "\n"; code != 0 || out != want {
		t.Errorf("--log-line: exit %d\n%s\nwant\n%s", code, out, want)
	}

	for _, c := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"explain", "--rules", dir, "--log", "-", "a.test"}, 2, "not both"},
		{[]string{"explain", "--rules", dir, "--log", "-", "--log-line", "x"}, 2, "not both"},
		{[]string{"explain", "--rules", dir, "--log", "/nonexistent.log"}, 1, "open /nonexistent.log"},
	} {
		if _, errOut, code := runEgressdIn(t, "", c.args...); code != c.code || !strings.Contains(errOut, c.stderr) {
			t.Errorf("%q: exit %d, stderr %q; want %d, %q", c.args, code, errOut, c.code, c.stderr)
		}
	}
}

// TestExplainNamespace: with --namespace and the namespace's own files,
// explain answers as the agent decides that namespace's pods — the
// global rules, then the namespace's — and says which of the namespace's
// rules the global ones override.
func TestExplainNamespace(t *testing.T) {
	unsetEnv(t, "EGRESSD_RULES")
	global := writeRules(t, map[string]string{"good.yaml": goodRule})
	teamA := writeRules(t, map[string]string{"a.yaml": `kind: EgressRule
metadata: {name: team-a}
spec: {destination: {service: a.example}, ports: [{port: 80, protocol: HTTP}]}
---
kind: EgressRule
metadata: {name: clash}
spec: {destination: {service: api.good.test}, ports: [{port: 443, protocol: HTTP}]}
`})
	out, errOut, code := runEgressd(t, "explain", "--rules", global, "--namespace", "team-a", "--namespace-rules", teamA,
		"a.example", "api.good.test:443")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	for _, want := range []string{"allow a.example:80 rule=team-a", "allow api.good.test:443 rule=good service=api.good.test port=443 protocol=HTTPS"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "namespace team-a: left out, it conflicts with the global rules") {
		t.Errorf("stderr does not name the rule left out:\n%s", errOut)
	}
	// Without the namespace, team A's rule is not the answer.
	out, _, _ = runEgressd(t, "explain", "--rules", global, "a.example")
	if !strings.HasPrefix(out, "deny  a.example:80") {
		t.Errorf("without --namespace: %s", out)
	}
	for _, args := range [][]string{
		{"--namespace", "team-a"},
		{"--namespace", "team-a", "--namespace-rules", teamA, "--kubeconfig", "/nonexistent"},
		{"--namespace-rules", teamA},
	} {
		_, errOut, code := runEgressd(t, append(append([]string{"explain", "--rules", global}, args...), "a.example")...)
		if code != 2 || !strings.Contains(errOut, "--namespace") {
			t.Errorf("%v: exit %d, stderr %q; want a usage error naming --namespace", args, code, errOut)
		}
	}
}
