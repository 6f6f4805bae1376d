package upstream

import (
	"net"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// DNS answers A and AAAA queries for every name under .test with V4 and V6
// (either may be the zero Addr: no answer of that type); anything else is
// NXDOMAIN.
type DNS struct {
	V4, V6 netip.Addr
}

// ServeDNS implements dns.Handler.
func (d DNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	for _, q := range req.Question {
		if !strings.HasSuffix(strings.ToLower(q.Name), ".test.") {
			m.Rcode = dns.RcodeNameError
			continue
		}
		hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: 5}
		switch {
		case q.Qtype == dns.TypeA && d.V4.IsValid():
			hdr.Rrtype = dns.TypeA
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: d.V4.AsSlice()})
		case q.Qtype == dns.TypeAAAA && d.V6.IsValid():
			hdr.Rrtype = dns.TypeAAAA
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: d.V6.AsSlice()})
		}
	}
	_ = w.WriteMsg(m)
}

// ServeDNS answers with h on the UDP and TCP sockets given, in the
// background. The returned function stops both servers.
func ServeDNS(pc net.PacketConn, ln net.Listener, h dns.Handler) (stop func()) {
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: ln, Handler: h}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	return func() {
		_ = udp.Shutdown()
		_ = tcp.Shutdown()
		pc.Close()
		ln.Close()
	}
}
