package e2e

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/kerneltest"
	"github.com/egressd/egressd/internal/upstream"
)

// The addresses of TestE2ECgroupRules (198.19.28.0/22, 2001:2:0:1800::/56:
// this test's own ranges).
var (
	scopeHost4  = netip.MustParseAddr("198.19.28.1") // the host's end: egressd's source address
	scopeDecoy4 = netip.MustParseAddr("198.19.28.10")
	scopeReal4  = netip.MustParseAddr("198.19.28.11")
	scopeDNS4   = netip.MustParseAddr("198.19.28.53")
)

// seenRequest is what the scope test's upstream received.
type seenRequest struct {
	host   string
	remote netip.Addr // who sent it
	local  netip.Addr // the address it arrived on
}

// scopeUpstream records every request it answers.
type scopeUpstream struct {
	mu   sync.Mutex
	seen []seenRequest
}

func (u *scopeUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ra, _ := netip.ParseAddrPort(r.RemoteAddr)
	var la netip.AddrPort
	if l, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		la, _ = netip.ParseAddrPort(l.String())
	}
	u.mu.Lock()
	u.seen = append(u.seen, seenRequest{host: r.Host, remote: ra.Addr().Unmap(), local: la.Addr().Unmap()})
	u.mu.Unlock()
	fmt.Fprintf(w, "upstream %s\n", r.Host)
}

// take returns the requests seen since the last call.
func (u *scopeUpstream) take() []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.seen
	u.seen = nil
	return s
}

func scopeRule(name, service string) string {
	return fmt.Sprintf("kind: EgressRule\nmetadata: {name: %s}\nspec:\n  destination: {service: %q}\n  ports: [{port: 80, protocol: http}]\n", name, service)
}

// TestE2ECgroupRules: two cgroups given their own rule files
// (--cgroup-rules) on top of one global file. Each cgroup's processes
// (and those of a cgroup below it) reach their own host and the global
// one and get 403 for the other's; a cgroup without files of its own gets
// the global rules only. The upstream asserts what arrived, from egressd's
// address, on the address egressd resolved (not the decoy the client
// connected to). A reload of one scope's files opens a host for it alone;
// an invalid version, or one that conflicts with the global rules, is
// refused for that scope (counted under its namespace label) and the last
// good one stays; the access log and the request metrics name the scope.
func TestE2ECgroupRules(t *testing.T) {
	kerneltest.Require(t)
	ext := kerneltest.Netns(t)
	p := netip.MustParsePrefix
	_, extIf := kerneltest.Veth(t, nil, []netip.Prefix{p("198.19.28.1/24"), p("2001:2:0:1800::1/64")},
		ext, []netip.Prefix{p("198.19.28.2/24"), p("2001:2:0:1800::2/64")})
	for _, a := range []netip.Addr{scopeDecoy4, scopeReal4, scopeDNS4} {
		if err := ext.AddrAdd(extIf, netip.PrefixFrom(a, 24)); err != nil {
			t.Fatal(err)
		}
	}
	up := &scopeUpstream{}
	err := ext.Do(func() error {
		ln, err := net.Listen("tcp", "0.0.0.0:80")
		if err != nil {
			return err
		}
		srv := upstream.Serve(ln, up, false, nil)
		t.Cleanup(func() { srv.Close() })
		pc, err := net.ListenPacket("udp", net.JoinHostPort(scopeDNS4.String(), "53"))
		if err != nil {
			return err
		}
		dl, err := net.Listen("tcp", net.JoinHostPort(scopeDNS4.String(), "53"))
		if err != nil {
			return err
		}
		t.Cleanup(upstream.ServeDNS(pc, dl, upstream.DNS{V4: scopeReal4}))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	parent := kerneltest.Cgroup(t)
	cgA, cgB, cgOther := filepath.Join(parent, "team-a"), filepath.Join(parent, "team-b"), filepath.Join(parent, "other")
	cgAChild := filepath.Join(cgA, "job")
	for _, d := range []string{cgA, cgB, cgOther, cgAChild} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	globalFile, aFile, bFile := filepath.Join(dir, "global.yaml"), filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	writeFile(t, globalFile, scopeRule("shared", "global.scope.test"))
	writeFile(t, aFile, scopeRule("a-api", "a.scope.test"))
	writeFile(t, bFile, scopeRule("b-api", "*.b.scope.test"))

	port, admin := freePort(t), net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	a := startEgressd(t, admin, "run", "--rules", globalFile, "--cgroup", parent,
		"--cgroup-rules", cgA+"="+aFile, "--cgroup-rules", cgB+"="+bFile,
		"--proxy-port", strconv.Itoa(port), "--admin", admin, "--pin-dir", pinDir(t), "--dns", scopeDNS4.String())

	get := func(cg, host string) int {
		t.Helper()
		cmd := kerneltest.Command(t, cg, nil, "curl", "-sS", "--max-time", kerneltest.Seconds(10*time.Second), "-o", "/dev/null", "-w", "%{http_code}",
			"--resolve", host+":80:"+scopeDecoy4.String(), "http://"+host+"/")
		var out bytes.Buffer
		cmd.Stdout = &out
		_ = cmd.Run()
		code, _ := strconv.Atoi(strings.TrimSpace(out.String()))
		return code
	}
	// expect checks the statuses, then that the upstream saw exactly the
	// allowed requests, each from egressd on the address it resolved.
	expect := func(cg string, want map[string]int) {
		t.Helper()
		var allowed []string
		for host, code := range want {
			if got := get(cg, host); got != code {
				t.Errorf("%s from %s: %d, want %d", host, filepath.Base(cg), got, code)
			}
			if code == 200 {
				allowed = append(allowed, host)
			}
		}
		seen := up.take()
		if len(seen) != len(allowed) {
			t.Errorf("from %s: the upstream saw %v, want one request for each of %v", filepath.Base(cg), seen, allowed)
		}
		for _, s := range seen {
			if want[s.host] != 200 || s.remote != scopeHost4 || s.local != scopeReal4 {
				t.Errorf("from %s: the upstream saw %+v; want only allowed hosts, from %v (egressd), on %v", filepath.Base(cg), s, scopeHost4, scopeReal4)
			}
		}
	}
	expect(cgA, map[string]int{"a.scope.test": 200, "global.scope.test": 200, "x.b.scope.test": 403})
	expect(cgB, map[string]int{"x.b.scope.test": 200, "global.scope.test": 200, "a.scope.test": 403})
	expect(cgAChild, map[string]int{"a.scope.test": 200, "x.b.scope.test": 403})
	expect(cgOther, map[string]int{"global.scope.test": 200, "a.scope.test": 403, "x.b.scope.test": 403})

	// The access log is written in batches (at most 100 ms late).
	waitFor(t, "the access log naming each request's scope", func() bool {
		logs := a.output()
		return strings.Contains(grep(logs, "host=a.scope.test"), "namespace="+cgA) && strings.Contains(grep(logs, "host=x.b.scope.test"), "namespace="+cgB)
	})
	_, m := a.get("/metrics")
	if n := metric(m, `egressd_requests_total{decision="deny",namespace="`+cgA+`",protocol="http/1.1",rule=""}`); n != 2 {
		t.Errorf("denied requests of %s: %v, want 2 (its own and its child's)\n%s", cgA, n, grep(m, "egressd_requests_total"))
	}
	if n := metric(m, `egressd_rules{namespace="`+cgB+`"}`); n != 1 {
		t.Errorf("egressd_rules of %s: %v, want 1", cgB, n)
	}

	reloads := func(ns, result string) float64 {
		_, m := a.get("/metrics")
		return metric(m, `egressd_rules_reloads_total{namespace="`+ns+`",result="`+result+`"}`)
	}
	// A new version of a.yaml opens a host for A only.
	replaceFile(t, aFile, scopeRule("a-api", "a.scope.test")+"---\n"+scopeRule("a-new", "new.scope.test"))
	waitFor(t, "a.yaml reloaded", func() bool { return reloads(cgA, "applied") == 1 })
	expect(cgA, map[string]int{"new.scope.test": 200})
	expect(cgB, map[string]int{"new.scope.test": 403})

	// An invalid version, then one that gives a global host another
	// protocol: both refused for A, whose last good rules stay; B and the
	// global rules are untouched.
	replaceFile(t, aFile, "kind: EgressRule\nspec: {destination: {service: \"a.*.bad\"}, ports: [{port: 80, protocol: http}]}\n")
	waitFor(t, "invalid a.yaml refused", func() bool { return reloads(cgA, "refused") == 1 })
	replaceFile(t, aFile, "kind: EgressRule\nmetadata: {name: hijack}\nspec: {destination: {service: global.scope.test}, ports: [{port: 80, protocol: https}]}\n")
	waitFor(t, "conflicting a.yaml refused", func() bool { return reloads(cgA, "refused") == 2 })
	if n := reloads(cgB, "refused") + reloads("", "refused"); n != 0 {
		t.Errorf("refusals counted for B or the global rules: %v", n)
	}
	expect(cgA, map[string]int{"new.scope.test": 200, "global.scope.test": 200, "x.b.scope.test": 403})
	if !strings.Contains(a.output(), "conflicts with the global rules") {
		t.Errorf("the refusal of the conflicting version is not logged:\n%s", a.output())
	}
}

// replaceFile writes data to path atomically (a new file renamed over it).
func replaceFile(t *testing.T, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	writeFile(t, tmp, data)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
