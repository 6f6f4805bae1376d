package l7

import (
	"net/netip"
	"strconv"
	"testing"
)

// TestAuditForwardsWouldDeny: in audit mode a host no rule allows reaches
// the upstream, the access log says would-deny with the reason, the metric
// counts it, and an allowed host is still logged as allow by its rule.
func TestAuditForwardsWouldDeny(t *testing.T) {
	u := newUpstream(t, nil)
	e := newEnv(t, Config{Rules: compileRules(t, httpRule("known", "known.test", u.port)),
		OriginalDst: fixedOrig{u.orig()}, Audit: true})
	port := strconv.Itoa(int(u.port))
	if status, body := e.get("unknown.test:" + port); status != 200 || body != "hello unknown.test:"+port+"/" {
		t.Fatalf("got %d %q, want the upstream's 200", status, body)
	}
	if r := u.next(t); r.Host != "unknown.test:"+port {
		t.Fatalf("upstream saw Host %q", r.Host)
	}
	if status, _ := e.get("known.test"); status != 200 {
		t.Fatalf("known.test got %d", status)
	}
	u.next(t)
	logs := e.logs.String()
	mustContain(t, logs, `"host":"unknown.test:`+port+`","port":`+port+`,"protocol":"http/1.1","upstream":"http","rule":"","decision":"would-deny","status":200`)
	mustContain(t, logs, `"reason":"`+reasonWouldDeny+`"`)
	mustContain(t, logs, `"rule":"known","decision":"allow"`)
	if n := e.counter("egressd_requests_total", "decision", "would-deny", "rule", ""); n != 1 {
		t.Errorf("would-deny counter = %v, want 1", n)
	}
	if n := e.counter("egressd_mode", "mode", "audit"); n != 1 {
		t.Errorf("egressd_mode{mode=audit} = %v, want 1", n)
	}
}

// TestAuditKeepsTheAddressPolicy: a would-deny request whose name resolves
// to the loopback is refused as in enforce mode: audit mode dials through
// the same policy.
func TestAuditKeepsTheAddressPolicy(t *testing.T) {
	ls := newLocalService(t, "127.0.0.1")
	z := newZoneDNS(t, map[string][]netip.Addr{"api.evil.test.": {netip.MustParseAddr("127.0.0.1")}})
	e := newEnv(t, Config{
		Rules:         compileRules(t, httpRule("r", "other.test", ls.port)),
		OriginalDst:   fixedOrig{netip.AddrPortFrom(testDst, ls.port)},
		Resolver:      z.resolver(),
		AllowUpstream: []netip.Prefix{},
		Audit:         true,
	})
	status, body := e.get("api.evil.test")
	if status != 403 {
		t.Fatalf("got %d %q, want 403", status, body)
	}
	mustContain(t, body, "egressd: upstream address 127.0.0.1")
	if n := ls.accepted.Load(); n != 0 {
		t.Fatalf("the local service accepted %d connection(s)", n)
	}
	if n := e.counter("egressd_upstream_addresses_refused_total", "reason", "loopback"); n != 1 {
		t.Errorf("refused counter = %v", n)
	}
	// An IP literal in the Host: in enforce mode only a rule naming that
	// IP exempts it from the policy; the audit stand-in names none.
	for _, host := range []string{"127.0.0.1", "[::ffff:127.0.0.1]"} {
		if status, body := e.get(host); status != 403 {
			t.Errorf("Host %s: got %d %q, want 403", host, status, body)
		}
	}
	if n := ls.accepted.Load(); n != 0 {
		t.Fatalf("the local service accepted %d connection(s) for an IP literal Host", n)
	}
}

// TestEnforceModeGauge: the default mode is enforce, and says so.
func TestEnforceModeGauge(t *testing.T) {
	u := newUpstream(t, nil)
	e := newEnv(t, Config{Rules: compileRules(t), OriginalDst: fixedOrig{u.orig()}})
	if status, _ := e.get("unknown.test"); status != 403 {
		t.Fatalf("enforce: got %d, want 403", status)
	}
	u.none(t)
	if n := e.counter("egressd_mode", "mode", "enforce"); n != 1 {
		t.Errorf("egressd_mode{mode=enforce} = %v, want 1", n)
	}
}
