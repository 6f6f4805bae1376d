package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/egressd/egressd/rules"
)

// accessLogMix is an access log of every kind of line suggest reads: text
// and JSON, audit and enforce, each protocol, and lines it must leave out.
const accessLogMix = `time=2026-12-02T01:00:00.000Z level=INFO msg="egressd running" mode=audit
time=2026-12-02T01:00:00.100Z level=INFO msg=request client=198.19.40.2:1 orig_dst=198.19.40.10:80 host=a.svc.example.test port=80 protocol=http/1.1 upstream=http rule="" decision=would-deny status=200 bytes_in=0 bytes_out=5 duration=1.5ms reason="no egress rule allows the host and port (audit mode: forwarded)"
time=x level=INFO msg=request host=b.svc.example.test port=80 protocol=http/1.1 upstream=http rule="" decision=would-deny status=200
time=x level=INFO msg=request host=C.svc.example.test.:80 port=80 protocol=http/1.0 upstream=http rule="" decision=would-deny status=200
{"time":"x","level":"INFO","msg":"request","client":"[2001:2::2]:1","orig_dst":"[2001:2::10]:443","host":"tls.example.test","port":443,"protocol":"tls-passthrough","upstream":"tls","rule":"","decision":"would-deny","status":0,"bytes_in":1,"bytes_out":2,"duration":1500000}
time=x level=INFO msg=request host=api.example.test port=443 protocol=http/1.1 upstream=http rule="" decision=would-deny status=502
time=x level=INFO msg=request host=api.example.test port=443 protocol=http/1.1 upstream=https rule=api decision=allow status=200
time=x level=INFO msg=request host=api.example.test port=8443 protocol=h2c upstream=https rule=api decision=allow status=200
time=x level=INFO msg=request host=grpc.example.test:50051 port=50051 protocol=grpc upstream=http rule="" decision=would-deny status=200 grpc_status=0
time=x level=INFO msg=request host=h2c.example.test port=8080 protocol=h2c upstream=http rule="" decision=would-deny status=200
time=x level=INFO msg=request host=198.19.40.7 port=80 protocol=http/1.1 upstream=http rule="" decision=would-deny status=200
time=x level=INFO msg=request host=[2001:2:0:2100::7]:80 port=80 protocol=http/1.1 upstream=http rule="" decision=would-deny status=200
time=x level=INFO msg=request host="" port=443 protocol=tls-passthrough upstream="" rule="" decision=deny status=0 reason="tls client hello without server name (SNI)"
time=x level=INFO msg=request host=evil.test port=80 protocol=http/1.1 upstream="" rule="" decision=deny status=403
time=x level=INFO msg=request host=evil.test port=80 protocol=http/1.1 upstream="" rule="" decision=invalid status=400 reason="malformed request head"
time=x level=INFO msg=request host=bad port=x
time=x level=INFO msg=request host="ex\nample.test" port=80 protocol=http/1.1 upstream=http rule="" decision=would-deny status=200
time=x level=INFO msg=request host=nop.example.test port=0 protocol=http/1.1 upstream=http rule="" decision=would-deny status=200
not a log line at all
`

// TestSuggest: the rules suggested from a mixed log load, allow exactly
// the names and ports seen with the protocols their use calls for, deny
// what was left out, and the comments and the summary say what was left
// out and why, with line numbers.
func TestSuggest(t *testing.T) {
	unsetEnv(t, "EGRESSD_WILDCARD_MIN")
	unsetEnv(t, "EGRESSD_INCLUDE_DENIED")
	dir := t.TempDir()
	log := filepath.Join(dir, "access.log")
	if err := os.WriteFile(log, []byte(accessLogMix), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runEgressdIn(t, "", "suggest", log)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	set := loadYAML(t, out)
	for _, c := range []struct {
		host  string
		port  uint16
		proto string // "" denied
	}{
		{"a.svc.example.test", 80, "HTTP"},
		{"b.svc.example.test", 80, "HTTP"},
		{"c.svc.example.test", 80, "HTTP"},
		{"tls.example.test", 443, "HTTPS"},  // passthrough only
		{"api.example.test", 443, "HTTPS"},  // originated, and plain HTTP to 443 in audit mode
		{"api.example.test", 8443, "HTTPS"}, // h2 originated
		{"grpc.example.test", 50051, "GRPC"},
		{"h2c.example.test", 8080, "HTTP2"},
		{"d.svc.example.test", 80, ""}, // the wildcard is only proposed
		{"api.example.test", 80, ""},
		{"198.19.40.7", 80, ""},
		{"2001:2:0:2100::7", 80, ""},
		{"evil.test", 80, ""},
		{"nop.example.test", 80, ""},
	} {
		m, ok := set.Match(c.host, c.port)
		switch {
		case c.proto == "" && ok:
			t.Errorf("%s:%d allowed by %s, want denied", c.host, c.port, m.Rule.Name)
		case c.proto != "" && !ok:
			t.Errorf("%s:%d denied, want %s", c.host, c.port, c.proto)
		case ok && m.Port.Protocol.String() != c.proto:
			t.Errorf("%s:%d: %s, want %s", c.host, c.port, m.Port.Protocol, c.proto)
		}
	}
	if set.Len() != 7 {
		t.Errorf("%d rules, want 7\n%s", set.Len(), out)
	}
	for _, want := range []string{
		"# 7 rules cover 9 of 16 requests.",
		"#   2 IP literal (egressd decides by name; write a rule naming the address only if you mean it): 198.19.40.7:80 (" + log + ":11), [2001:2:0:2100::7]:80 (" + log + ":12)",
		"#   2 denied (enforce mode refused it; --include-denied suggests rules for these too): (none):443 (" + log + ":13), evil.test:80 (" + log + ":14)",
		"#   1 refused before matching (decision invalid: a malformed request): \"malformed request head\" (" + log + ":15)",
		`#   1 not a host name a rule can hold`,
		`"ex\nample.test" (` + log + ":17)",
		"#   1 no port: nop.example.test (" + log + ":18)",
		"# Malformed lines, not read: 2.",
		"#   " + log + ":16: request line without protocol",
		"#   " + log + ":19: not a log record: want key=value at byte 1",
		"# Other log records skipped: 1.",
		"# c.svc.example.test: 1 request (1 would-deny)",
		"#   port 443 HTTPS: 1 with TLS originated by egressd, 1 plain HTTP to port 443",
		"# PROPOSAL, not in force: 3 names under svc.example.test were seen on the same ports",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "egressd suggest: 7 rules cover 9 of 16 requests; 1 wildcard proposed (comments); left out: 2 IP literal") ||
		!strings.Contains(errOut, "2 malformed lines not read") {
		t.Errorf("stderr summary:\n%s", errOut)
	}

	// The proposal, taken as it says (its rules deleted, the "# " removed),
	// loads and allows the siblings and names never seen under the parent.
	taken := takeProposal(t, out)
	set = loadYAML(t, taken)
	for _, h := range []string{"a.svc.example.test", "d.svc.example.test", "x.y.svc.example.test"} {
		if m, ok := set.Match(h, 80); !ok || m.Rule.Service != "*.svc.example.test" {
			t.Errorf("with the proposal taken, %s:80: %v %+v", h, ok, m.Rule)
		}
	}
}

// takeProposal does what the proposal says: deletes the rules it names
// and uncomments it.
func takeProposal(t *testing.T, out string) string {
	t.Helper()
	head, proposal, ok := strings.Cut(out, "---\n# PROPOSAL")
	_, commented, ok2 := strings.Cut(proposal, "\n# ---\n")
	if !ok || !ok2 {
		t.Fatalf("no proposal in\n%s", out)
	}
	var kept []string
	for _, d := range strings.Split(head, "---\n") {
		if !regexp.MustCompile(`service: "[abc]\.svc\.example\.test"`).MatchString(d) {
			kept = append(kept, d)
		}
	}
	var lines []string
	for _, l := range strings.Split(commented, "\n") {
		lines = append(lines, strings.TrimPrefix(l, "# "))
	}
	return strings.Join(append(kept, strings.Join(lines, "\n")), "---\n")
}

func loadYAML(t *testing.T, yaml string) *rules.Set {
	t.Helper()
	path := filepath.Join(t.TempDir(), "suggested.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	set, _, err := rules.Load(path)
	if err != nil {
		t.Fatalf("the suggested rules do not load: %v\n%s", err, yaml)
	}
	out, errOut, code := runEgressd(t, "check", path)
	if code != 0 {
		t.Fatalf("egressd check: exit %d\n%s%s", code, out, errOut)
	}
	return set
}

// runEgressdIn is runEgressd with stdin.
func runEgressdIn(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	err := dispatchIn(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	code = exitCode(err, &errb)
	return out.String(), errb.String(), code
}

// TestSuggestOptions: stdin, --include-denied, --wildcard-min, namespaces.
func TestSuggestOptions(t *testing.T) {
	unsetEnv(t, "EGRESSD_WILDCARD_MIN")
	unsetEnv(t, "EGRESSD_INCLUDE_DENIED")
	out, errOut, code := runEgressdIn(t, accessLogMix, "suggest", "--include-denied", "--wildcard-min", "0", "-")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	set := loadYAML(t, out)
	if _, ok := set.Match("evil.test", 80); !ok {
		t.Errorf("--include-denied: evil.test:80 denied\n%s", out)
	}
	if strings.Contains(out, "PROPOSAL") || !strings.Contains(out, "(stdin:13)") {
		t.Errorf("--wildcard-min 0 still proposes, or stdin lines are not named\n%s", out)
	}

	// Per namespace: one rule per host and namespace; one protocol per
	// host and port over all of them (rules.Load refuses two).
	nsLog := `time=x level=INFO msg=request host=api.test port=443 protocol=http/1.1 upstream=https decision=allow namespace=team-a
time=x level=INFO msg=request host=api.test port=443 protocol=tls-passthrough upstream=tls decision=would-deny namespace=team-b
time=x level=INFO msg=request host=api.test port=443 protocol=tls-passthrough upstream=tls decision=would-deny namespace=/sys/fs/cgroup/jobs/c
time=x level=INFO msg=request host=api.test port=443 protocol=tls-passthrough upstream=tls decision=would-deny namespace=/sys/fs/cgroup/jobs/d
`
	out, errOut, code = runEgressdIn(t, nsLog, "suggest")
	if code != 0 {
		t.Fatalf("namespaces: exit %d\n%s", code, errOut)
	}
	loadYAML(t, out)
	if strings.Count(out, `namespace: "team-a"`) != 1 || strings.Count(out, `namespace: "team-b"`) != 1 ||
		strings.Count(out, "protocol: HTTPS") != 4 || strings.Count(out, "namespace:") != 2 ||
		!strings.Contains(out, "# ==== scope /sys/fs/cgroup/jobs/c (a --cgroup-rules cgroup") ||
		!strings.Contains(out, `name: "api.test-2"`) {
		t.Errorf("namespaces:\n%s", out)
	}
}

func TestSuggestErrors(t *testing.T) {
	unsetEnv(t, "EGRESSD_WILDCARD_MIN")
	unsetEnv(t, "EGRESSD_INCLUDE_DENIED")
	for _, c := range []struct {
		name   string
		stdin  string
		args   []string
		code   int
		stderr string
	}{
		{"no such file", "", []string{"suggest", "/nonexistent/access.log"}, 1, "egressd: suggest: open /nonexistent/access.log: no such file or directory"},
		{"empty input", "", []string{"suggest"}, 1, "no access-log request line in the input"},
		{"binary input", "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xff\xfe\n", []string{"suggest"}, 1, "no access-log request line in the input"},
		{"all left out", "time=x level=INFO msg=request host=198.19.40.1 port=80 protocol=http/1.1 decision=allow\n", []string{"suggest"}, 1, "no rule to suggest: every request was left out"},
		{"bad flag", "", []string{"suggest", "--bogus"}, 2, "flag provided but not defined"},
		{"negative wildcard-min", "", []string{"suggest", "--wildcard-min", "-1"}, 2, "--wildcard-min -1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, errOut, code := runEgressdIn(t, c.stdin, c.args...)
			if code != c.code || !strings.Contains(errOut, c.stderr) {
				t.Errorf("exit %d, want %d; stderr:\n%s\nwant %q", code, c.code, errOut, c.stderr)
			}
			if code != 0 && out != "" {
				t.Errorf("stdout on failure:\n%s", out)
			}
		})
	}
}
