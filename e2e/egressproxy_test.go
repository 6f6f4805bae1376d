package e2e

import (
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestE2EEgressProxy chains the agent through `egressd gateway`, the
// dedicated egress proxy: rules with useEgressProxy leave through it (plain
// HTTP in absolute form, HTTPS-marked ports through a CONNECT tunnel with
// TLS end to end), others still go direct, and with the gateway down such
// requests fail with 502 instead of going direct.
func TestE2EEgressProxy(t *testing.T) {
	w := newWorld(t)
	writeFile(t, w.rulesFile, rulesYAML+`---
kind: EgressRule
metadata: {name: via-gateway}
spec:
  destination: {service: proxied.allowed.test}
  ports: [{port: 80, protocol: http}]
  useEgressProxy: true
---
kind: EgressRule
metadata: {name: via-gateway-tls}
spec:
  destination: {service: gw.whitelisted.test}
  ports: [{port: 443, protocol: https}]
  useEgressProxy: true
`)
	gwRules := w.rulesFile + ".gateway.yaml"
	writeFile(t, gwRules, `kind: EgressRule
metadata: {name: gateway}
spec:
  destination: {service: proxied.allowed.test}
  ports: [{port: 80, protocol: http}]
---
kind: EgressRule
metadata: {name: gateway-tls}
spec:
  destination: {service: gw.whitelisted.test}
  ports: [{port: 443, protocol: https}]
`)
	gwAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	gwAdmin := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	gwArgs := []string{"gateway", "--rules", gwRules, "--listen", gwAddr, "--admin", gwAdmin,
		"--dns", dns4.String(), "--ca-file", w.caFile}
	gw := startEgressd(t, gwAdmin, gwArgs...)
	port := freePort(t)
	a := startAgent(t, w, port, "--egress-proxy", "http://"+gwAddr)

	r := curl(t, w, w.pod, at("proxied.allowed.test", portHTTP, decoy4)...)
	if r.code != 200 || strings.TrimSuffix(r.field("host"), ":80") != "proxied.allowed.test" {
		t.Errorf("plain HTTP via the gateway: %d\n%s%s", r.code, r.body, r.err)
	}
	r = curl(t, w, w.pod, at("gw.whitelisted.test", portTLS, decoy4)...)
	if r.code != 200 || r.field("tls") != "true" || r.field("sni") != "gw.whitelisted.test" {
		t.Errorf("HTTPS-marked port via the gateway: %d\n%s%s", r.code, r.body, r.err)
	}
	if r := curl(t, w, w.pod, at("a.allowed.test", portHTTP, decoy4)...); r.code != 200 {
		t.Errorf("a rule without useEgressProxy: %d", r.code)
	}

	// The gateway logs a CONNECT tunnel when it ends: stop the agent, whose
	// pooled connection holds it open.
	a.signal(syscall.SIGTERM)
	a.wait(t)
	waitFor(t, "the gateway's log of the tunnel", func() bool { return strings.Contains(gw.output(), "gw.whitelisted.test") })
	gwLog := gw.output()
	if !strings.Contains(gwLog, "host=proxied.allowed.test") || !strings.Contains(gwLog, "protocol=connect") {
		t.Errorf("the gateway did not see both requests:\n%s", gwLog)
	}
	if strings.Contains(gwLog, "a.allowed.test") {
		t.Errorf("a direct rule went through the gateway:\n%s", gwLog)
	}

	// Gateway gone: 502, and nothing reaches the upstream directly.
	gw.signal(syscall.SIGKILL)
	gw.wait(t)
	startAgent(t, w, port, "--egress-proxy", "http://"+gwAddr)
	before := w.rec.Count(real4) + w.rec.Count(real6)
	for _, args := range [][]string{at("proxied.allowed.test", portHTTP, decoy4), at("gw.whitelisted.test", portTLS, decoy4)} {
		if r := curl(t, w, w.pod, args...); r.code != 502 {
			t.Errorf("gateway down: %d, want 502\n%s", r.code, r.body)
		}
	}
	if after := w.rec.Count(real4) + w.rec.Count(real6); after != before {
		t.Errorf("gateway down: the upstream got %d request(s) directly", after-before)
	}
	assertNoBypass(t, w)
}
