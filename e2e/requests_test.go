package e2e

import (
	"strings"
	"syscall"
	"testing"

	"github.com/egressd/egressd/internal/kerneltest"
)

// TestE2E runs one agent and drives it as users do: requests from the host
// and from a pod, the admin endpoints, then rule changes, then SIGTERM.
func TestE2E(t *testing.T) {
	w := newWorld(t)
	a := startAgent(t, w, 0)
	for _, side := range []struct {
		name string
		ns   *kerneltest.NS
	}{{"host", nil}, {"pod", w.pod}} {
		t.Run(side.name, func(t *testing.T) { testRequests(t, w, side.ns) })
	}
	assertNoBypass(t, w)
	t.Run("admin", func(t *testing.T) { testAdmin(t, a) })
	t.Run("rules change picked up", func(t *testing.T) { testReload(t, w, a) })
	assertNoBypass(t, w)

	a.signal(syscall.SIGTERM)
	if code := a.wait(t); code != 0 {
		t.Errorf("exit code after SIGTERM: %d\n%s", code, a.output())
	}
}

// testRequests sends the request cases from ns (nil: the host) and checks
// what the client got and what the upstream saw.
func testRequests(t *testing.T, w *world, ns *kerneltest.NS) {
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		fields map[string]string
	}{
		{"allowed wildcard", at("a.allowed.test", portHTTP, decoy4), 200,
			map[string]string{"host": "a.allowed.test", "tls": "false"}},
		{"wildcard spans labels", at("x.y.allowed.test", portHTTP, decoy4), 200, map[string]string{"host": "x.y.allowed.test"}},
		{"exact", at("exact.whitelisted.test", portHTTP, decoy4), 200, nil},
		{"denied host", at("denied.test", portHTTP, decoy4), 403, nil},
		{"denied port", at("a.allowed.test", portH2C, decoy4), 403, nil},
		{"wildcard needs a label", at("allowed.test", portHTTP, decoy4), 403, nil},
		{"HTTPS port upgraded to TLS", at("tls.whitelisted.test", portTLS, decoy4), 200,
			map[string]string{"tls": "true", "sni": "tls.whitelisted.test"}},
		{"h2c", append([]string{"--http2-prior-knowledge"}, at("exact.whitelisted.test", portH2C, decoy4)...), 200,
			map[string]string{"proto": "HTTP/2.0"}},
		{"IPv6 allowed", at("a.allowed.test", portHTTP, decoy6), 200, map[string]string{"host": "a.allowed.test"}},
		{"IPv6 denied", at("denied.test", portHTTP, decoy6), 403, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := curl(t, w, ns, tc.args...)
			if r.code != tc.code {
				t.Fatalf("status %d, want %d\n%s%s", r.code, tc.code, r.body, r.err)
			}
			// egressd dialed the name it resolved, not the decoy the app chose.
			if l := r.field("local"); r.code == 200 && r.field("proto") != "" && l != real4.String() && l != real6.String() {
				t.Errorf("upstream reached at %s, want the resolved %v or %v", l, real4, real6)
			}
			for k, v := range tc.fields {
				if got := r.field(k); got != v {
					t.Errorf("upstream saw %s %q, want %q\n%s", k, got, v, r.body)
				}
			}
		})
	}
	t.Run("TLS passthrough", func(t *testing.T) { testPassthrough(t, w, ns) })
	t.Run("gRPC allowed", func(t *testing.T) {
		if got := grpcCall(t, w, ns, bracket(decoy4)+":50051", "grpc.whitelisted.test:50051"); got != "OK" {
			t.Errorf("gRPC unary + bidi: %s", got)
		}
	})
	t.Run("gRPC denied", func(t *testing.T) {
		if got := grpcCall(t, w, ns, bracket(decoy4)+":50051", "denied.test:50051"); got != "PermissionDenied" {
			t.Errorf("gRPC to a denied authority: %s, want PermissionDenied", got)
		}
	})
}

// testAdmin checks /healthz, /readyz and /metrics after testRequests.
func testAdmin(t *testing.T, a *agent) {
	if code, _ := a.get("/healthz"); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
	if code, _ := a.get("/readyz"); code != 200 {
		t.Errorf("/readyz: %d", code)
	}
	_, m := a.get("/metrics")
	if n := metric(m, `egressd_redirect_events_total{event="redirected"}`); n < 20 {
		t.Errorf("redirected connects: %v, want >= 20", n)
	}
	if n := metric(m, `egressd_requests_total{decision="allow",namespace="",protocol="http/1.1",rule="allowed-wildcard"}`); n < 4 {
		t.Errorf("allowed requests of rule allowed-wildcard: %v\n%s", n, grep(m, "egressd_requests_total"))
	}
	if n := metric(m, `egressd_requests_total{decision="allow",namespace="",protocol="tls-passthrough",rule="tls-origination"}`); n != 2 {
		t.Errorf("TLS passthrough connections allowed: %v, want 2 (host and pod)\n%s", n, grep(m, "egressd_requests_total"))
	}
	if n := metric(m, `egressd_requests_total{decision="deny",namespace="",protocol="tls-passthrough",rule=""}`); n != 2 {
		t.Errorf("TLS passthrough connections denied: %v, want 2 (host and pod)\n%s", n, grep(m, "egressd_requests_total"))
	}
	if n := metric(m, `egressd_rules{namespace=""}`); n != 4 {
		t.Errorf("egressd_rules %v, want 4", n)
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "egressd_request_duration_seconds_bucket"} {
		if !strings.Contains(m, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

// testReload changes the rules file while the agent runs: a new rule is
// picked up, a broken version, a useEgressProxy rule without an egress
// proxy and an empty version are refused while the last good one keeps
// serving, and SIGHUP reloads too.
func testReload(t *testing.T, w *world, a *agent) {
	newRule := "---\nkind: EgressRule\nmetadata: {name: added}\nspec:\n  destination: {service: new.test}\n  ports: [{port: 80, protocol: http}]\n"
	writeFile(t, w.rulesFile, rulesYAML+newRule)
	waitStatus(t, w, at("new.test", portHTTP, decoy4), 200)

	// A broken version is refused; the last good rules keep serving.
	writeFile(t, w.rulesFile, rulesYAML+newRule+"---\nkind: EgressRule\nspec:\n  destination: {service: broken.test}\n  ports: [{port: 99999, protocol: http}]\n")
	waitFor(t, "the broken version refused", func() bool {
		_, m := a.get("/metrics")
		return metric(m, `egressd_rules_reloads_total{namespace="",result="refused"}`) >= 1
	})
	if r := curl(t, w, nil, at("new.test", portHTTP, decoy4)...); r.code != 200 {
		t.Errorf("after a refused reload new.test got %d, want 200 (old rules in force)", r.code)
	}
	if !strings.Contains(a.output(), "rules.yaml:") {
		t.Errorf("the refused version's problems are not logged with file:line:\n%s", a.output())
	}

	// Refused as well, with the last good rules serving: a rule with
	// useEgressProxy while the agent has no --egress-proxy (its requests
	// could only get 502), and a version with no rule at all (deny-all
	// takes a DenyAllEgress document).
	proxied := "---\nkind: EgressRule\nmetadata: {name: proxied}\nspec:\n  destination: {service: proxied.test}\n  ports: [{port: 80, protocol: http}]\n  useEgressProxy: true\n"
	for i, version := range []string{rulesYAML + newRule + proxied, "# emptied\n"} {
		writeFile(t, w.rulesFile, version)
		waitFor(t, "the version refused", func() bool {
			_, m := a.get("/metrics")
			return metric(m, `egressd_rules_reloads_total{namespace="",result="refused"}`) >= float64(2+i)
		})
		if r := curl(t, w, nil, at("new.test", portHTTP, decoy4)...); r.code != 200 {
			t.Errorf("refused version %d: new.test got %d, want 200 (old rules in force)", i, r.code)
		}
		if r := curl(t, w, nil, at("proxied.test", portHTTP, decoy4)...); r.code != 403 {
			t.Errorf("refused version %d: proxied.test got %d, want 403 (no rule in force allows it)", i, r.code)
		}
	}

	// SIGHUP reloads too: back to the original rules.
	writeFile(t, w.rulesFile, rulesYAML)
	a.signal(syscall.SIGHUP)
	waitStatus(t, w, at("new.test", portHTTP, decoy4), 403)
}
