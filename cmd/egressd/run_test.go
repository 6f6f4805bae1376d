package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The agent itself runs against the kernel in e2e/; these cover the parts
// that need none.

func TestRunUninstallWithNothingPinned(t *testing.T) {
	var stderr strings.Builder
	err := runCmd(context.Background(), []string{"--uninstall", "--pin-dir", filepath.Join(t.TempDir(), "none")}, io.Discard, &stderr)
	if err != nil {
		t.Fatalf("uninstall with nothing pinned: %v", err)
	}
	if !strings.Contains(stderr.String(), "uninstalled") {
		t.Errorf("log: %q", stderr.String())
	}
}

func TestLoadRootCAs(t *testing.T) {
	if pool, err := loadRootCAs(""); pool != nil || err != nil {
		t.Errorf("no --ca-file: %v %v", pool, err)
	}
	notPEM := filepath.Join(t.TempDir(), "x.pem")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o644)
	if _, err := loadRootCAs(notPEM); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("a file without certificates: %v", err)
	}
	if _, err := loadRootCAs(notPEM + ".missing"); err == nil {
		t.Error("a missing file is not an error")
	}
}

func TestWithDefaultPort(t *testing.T) {
	for in, want := range map[string]string{
		"10.96.0.10":      "10.96.0.10:53",
		"10.96.0.10:5353": "10.96.0.10:5353",
		"fd00::10":        "[fd00::10]:53",
		"[fd00::10]":      "[fd00::10]:53",
		"[fd00::10]:54":   "[fd00::10]:54",
		"dns.internal":    "dns.internal:53",
	} {
		if got := withDefaultPort(in, "53"); got != want {
			t.Errorf("withDefaultPort(%q) = %q, want %q", in, got, want)
		}
	}
}

// Without --cgroup, run is a usage error — but invalid rules are reported
// first (exit 1), so a user fixing a rule file sees the real problem.
func TestRunWithoutCgroup(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("kind: EgressRule\nspec:\n  destination: {service: api.example.test}\n  ports: [{port: 80, protocol: HTTP}]\n"), 0o644)
	os.WriteFile(bad, []byte("kind: EgressRule\nspec:\n  destination: {}\n"), 0o644)
	for _, tc := range []struct {
		rules string
		code  int
		want  string
	}{
		{good, exitUsage, "--cgroup is required"},
		{bad, exitFailure, "spec.destination.service"},
	} {
		var stderr strings.Builder
		err := runCmd(context.Background(), []string{"--rules", tc.rules, "--admin", "127.0.0.1:0"}, io.Discard, &stderr)
		if code := exitCode(err, &stderr); code != tc.code || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("run --rules %s: exit %d, want %d; stderr lacks %q:\n%s", filepath.Base(tc.rules), code, tc.code, tc.want, stderr.String())
		}
	}
}

// A reload that brings a useEgressProxy rule while no --egress-proxy is
// given is refused as the start would be: the last good rules stay.
func TestReloadRefusesEgressProxyRulesWithoutProxy(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "r.yaml"), []byte(goodRule), 0o644)
	var logs strings.Builder
	r, _, stop, err := loadRules(dir, slog.New(slog.NewTextHandler(&logs, nil)), egressProxyCheck(nil), &reloadHook{})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	os.WriteFile(filepath.Join(dir, "r.yaml"), []byte(goodRule+"---\n"+proxyRule), 0o644)
	err = r.Reload()
	if err == nil || !strings.Contains(err.Error(), "1 rule(s) have useEgressProxy but no egress proxy is configured") {
		t.Fatalf("Reload = %v, want refused", err)
	}
	if _, ok := r.Current().Match("p.test", 80); ok || r.Current().Len() != 1 || !r.Stats().LastFailed {
		t.Errorf("after the refused version: %d rules, p.test allowed %v, stats %+v", r.Current().Len(), ok, r.Stats())
	}
	if !strings.Contains(logs.String(), "rules reload refused") {
		t.Errorf("log lacks the refusal:\n%s", logs.String())
	}
}
