package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestEchoOverTLS(t *testing.T) {
	ca, err := NewCA("svc.test")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var rec Recorder
	srv := Serve(ln, Echo(&rec), false, &ca.Cert)
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.PEM)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "svc.test"}}}
	resp, err := c.Get("https://" + ln.Addr().String() + "/x")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"tls: true", "sni: svc.test", "path: /x", "local: 127.0.0.1"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("echo lacks %q:\n%s", want, b)
		}
	}
	if n := rec.Count(netip.MustParseAddr("127.0.0.1")); n != 1 {
		t.Errorf("recorded %d requests, want 1", n)
	}
}

func TestDNS(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := ServeDNS(pc, ln, DNS{V4: netip.MustParseAddr("198.18.0.10")})
	defer stop()
	m := new(dns.Msg)
	m.SetQuestion("a.b.test.", dns.TypeA)
	in, err := dns.Exchange(m, pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Answer) != 1 || !strings.Contains(in.Answer[0].String(), "198.18.0.10") {
		t.Errorf("answer %v", in.Answer)
	}
	m.SetQuestion("example.com.", dns.TypeA)
	if in, err = dns.Exchange(m, pc.LocalAddr().String()); err != nil || in.Rcode != dns.RcodeNameError {
		t.Errorf("outside .test: rcode %v err %v", in, err)
	}
}
