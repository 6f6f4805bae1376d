package e2e

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/internal/accesslog"
	"github.com/egressd/egressd/internal/kerneltest"
	"github.com/egressd/egressd/internal/upstream"
)

// loopbackDNS answers loopback.test with 127.0.0.1 and ::1, every other
// .test name as the world's DNS does.
type loopbackDNS struct{ upstream.DNS }

func (d loopbackDNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) == 1 && strings.EqualFold(req.Question[0].Name, "loopback.test.") {
		upstream.DNS{V4: netip.MustParseAddr("127.0.0.1"), V6: netip.IPv6Loopback()}.ServeDNS(w, req)
		return
	}
	d.DNS.ServeDNS(w, req)
}

// serveLoopbackDNS starts loopbackDNS on 127.0.0.1 (UDP and TCP, one
// port) in the host namespace and returns its address.
func serveLoopbackDNS(t *testing.T) string {
	t.Helper()
	// DNS over UDP and TCP on one port: the UDP port the kernel picks may
	// be taken for TCP (another test's connection), so pick again then.
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	for range 20 {
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(upstream.ServeDNS(pc, ln, loopbackDNS{upstream.DNS{V4: real4, V6: real6}}))
	return pc.LocalAddr().String()
}

// accessEntries reads the request lines of an agent's output.
func accessEntries(t *testing.T, out string) []*accesslog.Entry {
	t.Helper()
	r := accesslog.NewReader(strings.NewReader(out))
	var es []*accesslog.Entry
	for {
		e, err := r.Next()
		var le *accesslog.LineError
		switch {
		case err == io.EOF:
			return es
		case errors.As(err, &le): // a line of another writer: not ours to judge here
		case err != nil:
			t.Fatal(err)
		default:
			es = append(es, e)
		}
	}
}

// waitEntry waits for the access-log line of a request to host (the log
// is written in batches) and returns it.
func waitEntry(t *testing.T, a *agent, host string) *accesslog.Entry {
	t.Helper()
	var found *accesslog.Entry
	waitFor(t, "the access-log line of "+host, func() bool {
		for _, e := range accessEntries(t, a.output()) {
			if e.HostName() == host {
				found = e
			}
		}
		return found != nil
	})
	return found
}

// TestE2EAudit: in audit mode, from a pod, a host no rule allows reaches
// the upstream (which says so), logged would-deny with the reason and
// counted; everything else holds as in enforce mode: a name answering
// 127.0.0.1 is still refused (the loopback service accepts nothing), the
// node's own address is still refused, and UDP the operator did not allow
// does not leave (a listener that gets the allowed datagram never got the
// refused one sent before it).
func TestE2EAudit(t *testing.T) {
	w := newWorld(t)
	local, err := net.Listen("tcp", "127.0.0.1:0") // a service only the node should reach
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { local.Close() })
	localAccepts := upstream.CountAccepts(local)
	localPort := local.Addr().(*net.TCPAddr).Port
	nodeSvc, err := net.Listen("tcp", net.JoinHostPort(node4.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nodeSvc.Close() })
	nodeAccepts := upstream.CountAccepts(nodeSvc)
	nodePort := nodeSvc.Addr().(*net.TCPAddr).Port

	const udpPort = 22101
	allowedUDP := netip.AddrPortFrom(dns4, udpPort)
	datagrams := make(chan string, 4)
	var pc net.PacketConn
	if err := w.ext.Do(func() (err error) { pc, err = net.ListenPacket("udp", ":"+itoa(udpPort)); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			datagrams <- strings.TrimSpace(string(buf[:n]))
		}
	}()

	a := startAgent(t, w, 0, "--mode", "audit", "--dns", serveLoopbackDNS(t), "--allow-udp", allowedUDP.String())
	if !strings.Contains(a.output(), "mode=audit") {
		t.Errorf("the start-up line does not say mode=audit:\n%s", a.output())
	}
	if _, body := a.get("/readyz"); !strings.Contains(body, "mode: audit") {
		t.Errorf("/readyz body %q does not say mode: audit", body)
	}

	t.Run("denied host reaches the upstream", func(t *testing.T) {
		before := w.rec.Count(real4) + w.rec.Count(real6)
		r := curl(t, w, w.pod, at("denied.test", portHTTP, decoy4)...)
		if l := r.field("local"); r.code != 200 || r.field("host") != "denied.test" || l != real4.String() && l != real6.String() {
			t.Fatalf("status %d, upstream saw host %q at %q; want 200, denied.test at the resolved %v or %v\n%s%s", r.code, r.field("host"), l, real4, real6, r.body, r.err)
		}
		if n := w.rec.Count(real4) + w.rec.Count(real6) - before; n != 1 {
			t.Errorf("the upstream recorded %d requests at the resolved addresses, want 1", n)
		}
		e := waitEntry(t, a, "denied.test")
		if e.Decision != "would-deny" || e.Rule != "" || e.Reason != "no egress rule allows the host and port (audit mode: forwarded)" || e.Status != 200 || e.Port != portHTTP {
			t.Errorf("access log: %+v, want decision would-deny with the reason, status 200", *e)
		}
		_, m := a.get("/metrics")
		if n := metric(m, `egressd_requests_total{decision="would-deny",namespace="",protocol="http/1.1",rule=""}`); n != 1 {
			t.Errorf("would-deny requests counted: %v, want 1\n%s", n, grep(m, "egressd_requests_total"))
		}
		if n := metric(m, `egressd_mode{mode="audit"}`); n != 1 {
			t.Errorf("egressd_mode{mode=\"audit\"} %v, want 1", n)
		}
	})
	t.Run("allowed host is still allowed", func(t *testing.T) {
		if r := curl(t, w, w.pod, at("a.allowed.test", portHTTP, decoy4)...); r.code != 200 {
			t.Fatalf("status %d\n%s%s", r.code, r.body, r.err)
		}
		if e := waitEntry(t, a, "a.allowed.test"); e.Decision != "allow" || e.Rule != "allowed-wildcard" {
			t.Errorf("access log: %+v, want allow by allowed-wildcard", *e)
		}
	})
	t.Run("loopback DNS answer refused", func(t *testing.T) {
		r := curl(t, w, w.pod, at("loopback.test", localPort, decoy4)...)
		if r.code != 403 || !strings.Contains(r.body, "loopback") {
			t.Errorf("status %d, want 403 naming loopback\n%s%s", r.code, r.body, r.err)
		}
		if n := localAccepts.Load(); n != 0 {
			t.Errorf("the loopback service accepted %d connections, want 0", n)
		}
		if e := waitEntry(t, a, "loopback.test"); e.Status != 403 || !strings.Contains(e.Reason, "refused: loopback") {
			t.Errorf("access log: %+v", *e)
		}
	})
	t.Run("node address refused", func(t *testing.T) {
		// The app names the node's own address as the host: in audit mode
		// that is forwarded to the address, which the policy refuses (it
		// did not: the audit stand-in rule named the IP, which exempted it).
		r := curl(t, w, w.pod, "http://"+node4.String()+":"+itoa(nodePort)+"/")
		if r.code != 403 {
			t.Errorf("status %d, want 403\n%s%s", r.code, r.body, r.err)
		}
		if n := nodeAccepts.Load(); n != 0 {
			t.Errorf("the node service accepted %d connections, want 0", n)
		}
	})
	t.Run("UDP still refused", func(t *testing.T) {
		// The refused datagram goes first, to the same listener (it is
		// bound to every address of the port); the allowed one after it.
		if sendUDP(t, w, netip.AddrPortFrom(decoy4, udpPort), "refused") {
			t.Error("UDP to a destination not allowed: sent, want EPERM")
		}
		if !sendUDP(t, w, allowedUDP, "allowed") {
			t.Fatal("UDP to the --allow-udp destination: not sent")
		}
		select {
		case got := <-datagrams:
			if got != "allowed" {
				t.Errorf("the listener's first datagram is %q, want the allowed one", got)
			}
		case <-time.After(kerneltest.Scale(10 * time.Second)):
			t.Fatal("the allowed datagram did not arrive")
		}
		for _, to := range []netip.AddrPort{netip.AddrPortFrom(decoy4, 53), netip.AddrPortFrom(dns4, 443)} {
			if sendUDP(t, w, to, "x") {
				t.Errorf("UDP to %v: sent, want EPERM (audit mode changes nothing in the datapath)", to)
			}
		}
	})
	assertNoBypass(t, w)
}

// The request mix of TestE2EAuditSuggestEnforce, made from the pod.
type mixCase struct {
	name string
	send func(t *testing.T, w *world) response
	// check tells from the upstream's answer that it got the request as
	// sent; "" when it did.
	check func(r response) string
}

// hostField is the Host the upstream saw, without a port.
func hostField(r response) string {
	return (&accesslog.Entry{Host: r.field("host")}).HostName()
}

func auditMix() []mixCase {
	echoed := func(host, tls string) func(r response) string {
		return func(r response) string {
			if r.code != 200 || hostField(r) != host || r.field("tls") != tls || r.field("local") != real4.String() && r.field("local") != real6.String() {
				return "status " + itoa(r.code) + ", upstream saw host " + r.field("host") + " tls " + r.field("tls") + " at " + r.field("local") + "\n" + r.body + r.err
			}
			return ""
		}
	}
	return []mixCase{
		{"plain HTTP", func(t *testing.T, w *world) response {
			return curl(t, w, w.pod, at("web.audit.test", portHTTP, decoy4)...)
		}, echoed("web.audit.test", "false")},
		{"plain HTTP IPv6", func(t *testing.T, w *world) response {
			return curl(t, w, w.pod, at("api.audit.test", portHTTP, decoy6)...)
		}, echoed("api.audit.test", "false")},
		{"HTTPS origination", func(t *testing.T, w *world) response {
			return curl(t, w, w.pod, at("tls.whitelisted.test", portTLS, decoy4)...)
		}, echoed("tls.whitelisted.test", "true")},
		{"TLS passthrough", func(t *testing.T, w *world) response {
			return curl(t, w, w.pod, tlsAt(w, "other.whitelisted.test", portTLS, decoy4)...)
		}, func(r response) string {
			if r.code != 200 || r.field("sni") != "other.whitelisted.test" {
				return "status " + itoa(r.code) + ", sni " + r.field("sni") + "\n" + r.body + r.err
			}
			return ""
		}},
		{"h2c", func(t *testing.T, w *world) response {
			return curl(t, w, w.pod, append([]string{"--http2-prior-knowledge"}, at("h2c.audit.test", portH2C, decoy4)...)...)
		}, func(r response) string {
			if r.code != 200 || r.field("proto") != "HTTP/2.0" || hostField(r) != "h2c.audit.test" {
				return "status " + itoa(r.code) + ", proto " + r.field("proto") + "\n" + r.body + r.err
			}
			return ""
		}},
		{"gRPC", func(t *testing.T, w *world) response {
			return response{body: grpcCall(t, w, w.pod, bracket(decoy4)+":50051", "rpc.audit.test:50051")}
		}, func(r response) string {
			if r.body != "OK" {
				return "gRPC unary + bidi: " + r.body
			}
			return ""
		}},
	}
}

// TestE2EAuditSuggestEnforce is the adoption path end to end: an agent in
// audit mode, with a rule for only one of the hosts, serves a known mix
// from a pod (plain HTTP over IPv4 and IPv6, HTTPS origination, TLS
// passthrough, h2c, gRPC, and a request to an IP literal); egressd suggest
// reads its log; an agent in enforce mode with the suggested rules and
// nothing else allows every request of the mix again (each asserted at
// the upstream) and denies the IP literal and a host that was not in the
// log, which the upstream never sees.
func TestE2EAuditSuggestEnforce(t *testing.T) {
	w := newWorld(t)
	writeFile(t, w.rulesFile, "kind: EgressRule\nmetadata: {name: tls-origination}\nspec:\n  destination: {service: tls.whitelisted.test}\n  ports: [{port: 443, protocol: https}]\n")
	mix := auditMix()
	ipLiteral := []string{"-H", "Host: " + real4.String(), "http://" + decoy4.String() + "/"}

	audit := startAgent(t, w, 0, "--mode", "audit", "--log-format", "json")
	for _, c := range mix {
		if msg := c.check(c.send(t, w)); msg != "" {
			t.Errorf("audit mode, %s: %s", c.name, msg)
		}
	}
	if r := curl(t, w, w.pod, ipLiteral...); r.code != 200 {
		t.Errorf("audit mode, IP literal: status %d\n%s%s", r.code, r.body, r.err)
	}
	audit.signal(syscall.SIGTERM)
	if code := audit.wait(t); code != 0 {
		t.Fatalf("audit agent exit %d\n%s", code, audit.output())
	}
	seen := 0 // request lines of the mix (gRPC: one per call)
	for _, e := range accessEntries(t, audit.output()) {
		if e.HostName() != real4.String() {
			seen++
		}
	}
	logFile := filepath.Join(t.TempDir(), "access.log")
	if err := os.WriteFile(logFile, []byte(audit.output()), 0o644); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(egressdBinary(t), "suggest", logFile)
	var suggested, summary bytes.Buffer
	cmd.Stdout, cmd.Stderr = &suggested, &summary
	if err := cmd.Run(); err != nil {
		t.Fatalf("egressd suggest: %v\n%s", err, summary.String())
	}
	t.Logf("egressd suggest:\n%s%s", suggested.String(), summary.String())
	for _, want := range []string{
		"1 IP literal", real4.String() + ":80",
		`service: "web.audit.test"`, `service: "api.audit.test"`, `service: "h2c.audit.test"`, `service: "rpc.audit.test"`,
		`service: "tls.whitelisted.test"`, `service: "other.whitelisted.test"`,
	} {
		if !strings.Contains(suggested.String(), want) {
			t.Errorf("suggested rules lack %q", want)
		}
	}
	// Siblings: web and api on port 80, h2c and rpc on other ports, tls and
	// other on 443 — never 3 on the same ports, so no wildcard proposal.
	if strings.Contains(suggested.String(), "PROPOSAL") {
		t.Errorf("a wildcard was proposed")
	}
	writeFile(t, w.rulesFile, suggested.String())
	if out, err := exec.Command(egressdBinary(t), "check", w.rulesFile).CombinedOutput(); err != nil {
		t.Fatalf("egressd check of the suggested rules: %v\n%s", err, out)
	}

	enforce := startAgent(t, w, 0) // --mode enforce is the default
	if _, body := enforce.get("/readyz"); strings.Contains(body, "audit") {
		t.Fatalf("/readyz of the enforcing agent: %q", body)
	}
	for _, c := range mix {
		if msg := c.check(c.send(t, w)); msg != "" {
			t.Errorf("enforce mode with the suggested rules, %s: %s", c.name, msg)
		}
	}
	before := requestsSeen(w)
	if r := curl(t, w, w.pod, ipLiteral...); r.code != 403 {
		t.Errorf("enforce mode, IP literal: status %d, want 403 (left out)\n%s", r.code, r.body)
	}
	if r := curl(t, w, w.pod, at("held-out.audit.test", portHTTP, decoy4)...); r.code != 403 {
		t.Errorf("enforce mode, a host not in the log: status %d, want 403\n%s", r.code, r.body)
	}
	if n := requestsSeen(w) - before; n != 0 {
		t.Errorf("the upstream received %d request(s) the suggested rules should deny", n)
	}
	var allowed, other int
	for _, e := range accessEntries(t, enforceOutput(t, enforce)) {
		if e.Decision == "allow" {
			allowed++
		} else {
			other++
		}
	}
	if allowed != seen || other != 2 {
		t.Errorf("enforcing agent logged %d allowed and %d other requests, want %d (as in audit mode) and 2", allowed, other, seen)
	}
	assertNoBypass(t, w)
}

// enforceOutput stops the agent (flushing its access log) and returns its
// output.
func enforceOutput(t *testing.T, a *agent) string {
	t.Helper()
	a.signal(syscall.SIGTERM)
	if code := a.wait(t); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
	return a.output()
}
