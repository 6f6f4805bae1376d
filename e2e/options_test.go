package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/kerneltest"
)

// TestE2EDialOriginalAndExclude: --dial=original sends an allowed request to
// the address the app connected to when the name resolves there, and
// refuses it (403) for any other address; --exclude-cidr destinations are
// not redirected at all.
func TestE2EDialOriginalAndExclude(t *testing.T) {
	w := newWorld(t)
	excluded := netip.MustParseAddr("198.19.5.2") // the external veth end; the upstreams listen there too
	a := startAgent(t, w, 0, "--dial", "original", "--exclude-cidr", excluded.String()+"/32")

	r := curl(t, w, w.pod, at("a.allowed.test", portHTTP, real4)...)
	if r.code != 200 || r.field("local") != real4.String() {
		t.Errorf("--dial=original: %d, upstream reached at %q, want %v\n%s%s", r.code, r.field("local"), real4, r.body, r.err)
	}
	if r := curl(t, w, w.pod, at("a.allowed.test", portHTTP, decoy4)...); r.code != 403 || !strings.Contains(r.body, "not an address of a.allowed.test") {
		t.Errorf("--dial=original to an address the name does not resolve to: %d %q, want 403", r.code, r.body)
	}
	if r := curl(t, w, w.pod, at("denied.test", portHTTP, decoy4)...); r.code != 403 {
		t.Errorf("--dial=original still decides: %d, want 403", r.code)
	}
	r = curl(t, w, nil, at("denied.test", portHTTP, excluded)...)
	if r.code != 200 || r.field("local") != excluded.String() {
		t.Errorf("excluded CIDR: %d at %q, want 200 straight from the upstream\n%s%s", r.code, r.field("local"), r.body, r.err)
	}
	// The access log is written in batches: once a later request's line is
	// out, so is every earlier one.
	curl(t, w, w.pod, at("flush.denied.test", portHTTP, decoy4)...)
	for deadline := time.Now().Add(kerneltest.Scale(10 * time.Second)); !strings.Contains(a.output(), "host=flush.denied.test") && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Contains(a.output(), "orig_dst="+excluded.String()) {
		t.Errorf("a connection to an excluded CIDR went through egressd:\n%s", a.output())
	}
}

// TestE2EAgentInsideCgroup runs egressd inside the cgroup it redirects, as
// the DaemonSet's pod sits inside kubepods: its own upstream and DNS
// sockets are registered with the programs (by cookie), so they leave
// instead of looping back.
func TestE2EAgentInsideCgroup(t *testing.T) {
	w := newWorld(t)
	w.agentCgroup = w.cgroup
	a := startAgent(t, w, 0)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"HTTP", at("a.allowed.test", portHTTP, decoy4)},
		{"HTTPS-marked port", at("tls.whitelisted.test", portTLS, decoy4)},
		{"h2c", append([]string{"--http2-prior-knowledge"}, at("exact.whitelisted.test", portH2C, decoy4)...)},
	} {
		if r := curl(t, w, w.pod, tc.args...); r.code != 200 {
			t.Errorf("%s: %d\n%s%s", tc.name, r.code, r.body, r.err)
		}
	}
	_, m := a.get("/metrics")
	if n := metric(m, `egressd_redirect_events_total{event="skipped_own"}`); n < 3 {
		t.Errorf("egressd's own connects let out by their cookie: %v, want >= 3", n)
	}
	assertNoBypass(t, w)
}

// TestE2ELeastPrivilege runs the agent with the minimum capabilities:
// CAP_BPF and CAP_NET_ADMIN (the DaemonSet adds CAP_PERFMON for the packet
// guard only, deploy/daemonset.yaml). It attaches with the source-route
// guard on, takes over its own pins after a restart, and proxies.
func TestE2ELeastPrivilege(t *testing.T) {
	w := newWorld(t)
	w.agentWrap = []string{"setpriv", "--bounding-set", "-all,+bpf,+net_admin", "--inh-caps", "-all", "--"}
	port := freePort(t)
	a := startAgent(t, w, port)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", a.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	// CAP_NET_ADMIN is bit 12, CAP_BPF bit 39.
	if !strings.Contains(string(status), "CapEff:\t0000008000001000\n") {
		t.Fatalf("egressd does not run with exactly CAP_BPF and CAP_NET_ADMIN:\n%s", grep(string(status), "Cap"))
	}
	// The source-route guard loads with these two (bpf/guard.c is written
	// for 6.1's verifier without CAP_PERFMON); only the packet guard needs
	// CAP_PERFMON.
	if _, m := a.get("/metrics"); metric(m, `egressd_guard{guard="source_routes"}`) != 1 {
		t.Errorf("the source-route guard is off with CAP_BPF and CAP_NET_ADMIN:\n%s", a.output())
	}
	if r := curl(t, w, w.pod, at("tls.whitelisted.test", portTLS, decoy4)...); r.code != 200 || r.field("tls") != "true" {
		t.Errorf("first agent: %d\n%s%s", r.code, r.body, r.err)
	}
	a.signal(syscall.SIGTERM)
	if code := a.wait(t); code != 0 {
		t.Errorf("exit code %d\n%s", code, a.output())
	}
	startAgent(t, w, port) // takes the pins over
	if r := curl(t, w, nil, at("a.allowed.test", portHTTP, decoy6)...); r.code != 200 {
		t.Errorf("second agent: %d\n%s%s", r.code, r.body, r.err)
	}
	if r := curl(t, w, nil, at("denied.test", portHTTP, decoy4)...); r.code != 403 {
		t.Errorf("second agent, denied: %d", r.code)
	}
	assertNoBypass(t, w)
}
