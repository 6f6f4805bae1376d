package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/internal/upstream"
)

// The names every proxy is configured to allow (exact + wildcard), and the
// host the load uses (the wildcard path, as in the reference run).
const (
	exactHost = "exact.whitelisted.test"
	wildZone  = "allowed.test"
	loadHost  = "api.allowed.test"
)

// writeRules writes an EgressRule file with n rules: the two the load needs
// (exact + wildcard, on the HTTP, HTTPS and HTTP2 ports) and n-2 others of
// both kinds that never match, so that n measures the matcher's cost.
func writeRules(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	rule := func(name, service string) {
		fmt.Fprintf(w, "---\nkind: EgressRule\nmetadata:\n  name: %s\nspec:\n  destination:\n    service: %q\n"+
			"  ports:\n    - port: 80\n      protocol: http\n    - port: 443\n      protocol: https\n"+
			"    - port: 8080\n      protocol: http2\n    - port: 9090\n      protocol: http2\n", name, service)
	}
	rule("exact", exactHost)
	rule("wildcard", "*."+wildZone)
	for i := 2; i < n; i++ {
		if i%2 == 0 {
			rule(fmt.Sprintf("filler-%d", i), fmt.Sprintf("svc-%d.filler-%d.test", i, i%997))
		} else {
			rule(fmt.Sprintf("filler-%d", i), fmt.Sprintf("*.zone-%d.filler.test", i))
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// startDNS serves A records for the whitelisted names (pointing at the
// upstream) on a loopback UDP port, NXDOMAIN for anything else, so that
// egressd's default "resolve" dial mode never asks a real resolver.
func startDNS() (addr string, stop func(), err error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("dns listen: %w", err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		name := strings.TrimSuffix(strings.ToLower(q.Question[0].Name), ".")
		allowed := name == exactHost || strings.HasSuffix(name, "."+wildZone)
		switch {
		case !allowed:
			m.Rcode = dns.RcodeNameError
		case q.Question[0].Qtype == dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
				A:   upstreamAddr.IP.To4(),
			})
		}
		w.WriteMsg(m)
	})
	srv := &dns.Server{PacketConn: pc, Handler: h}
	go srv.ActivateAndServe()
	return pc.LocalAddr().String(), func() { srv.Shutdown() }, nil
}

// writeCerts writes a throwaway CA (ca.pem) and an upstream certificate for
// the whitelisted names and the upstream IP (cert.pem, key.pem) into dir.
func writeCerts(dir string) error {
	ca, err := upstream.NewCA(exactHost, "*."+wildZone, upstreamIP)
	if err != nil {
		return err
	}
	cert, key, err := ca.ServerPEM()
	if err != nil {
		return err
	}
	for name, b := range map[string][]byte{"ca.pem": ca.PEM, "cert.pem": cert, "key.pem": key} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}
