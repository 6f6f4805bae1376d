package l7

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/egressd/egressd/rules"
)

// testCA is a certificate authority generated for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "egressd test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// leaf issues a server certificate for names (IP literals become IP SANs).
func (ca *testCA) leaf(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	var dnsNames []string
	var ips []net.IP
	for _, n := range names {
		if a, err := netip.ParseAddr(n); err == nil {
			ips = append(ips, a.AsSlice())
		} else {
			dnsNames = append(dnsNames, n)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     dnsNames,
		IPAddresses:  ips,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// newTLSUpstream is an HTTPS upstream presenting cert.
func newTLSUpstream(t testing.TB, cert tls.Certificate) *upstream {
	t.Helper()
	u := newUpstream(t, nil)
	u.srv.Close() // restart it behind TLS on a fresh listener
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.port = uint16(ln.Addr().(*net.TCPAddr).Port)
	u.srv = &http.Server{Handler: u.record(nil), ErrorLog: log.New(io.Discard, "", 0)}
	tln := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
	go u.srv.Serve(tln)
	t.Cleanup(func() { u.srv.Close() })
	return u
}

func httpsEnv(t *testing.T, u *upstream, ca *testCA) *env {
	return newEnv(t, Config{
		Rules: compileRules(t, &rules.Rule{Name: "secure", Service: "*.allowed.test",
			Ports: []rules.Port{{Number: u.port, Protocol: rules.HTTPS}}}),
		OriginalDst: fixedOrig{u.orig()},
		RootCAs:     ca.pool,
	})
}

func TestTLSOriginationWithSNI(t *testing.T) {
	ca := newTestCA(t)
	u := newTLSUpstream(t, ca.leaf(t, "secure.allowed.test"))
	e := httpsEnv(t, u, ca)
	rc := e.dial()
	for i := 0; i < 3; i++ { // the second and third reuse the pooled TLS connection
		rc.send("GET /s HTTP/1.1\r\nHost: secure.allowed.test\r\n\r\n")
		resp, body := rc.read("GET")
		if resp.StatusCode != 200 || body != "hello secure.allowed.test/s" {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
		if got := u.next(t); got.SNI != "secure.allowed.test" {
			t.Fatalf("upstream saw SNI %q", got.SNI)
		}
	}
	mustContain(t, e.logs.String(), `"upstream":"https"`)
}

func TestTLSOriginationRejectsBadCertificates(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	cases := []struct {
		name   string
		cert   tls.Certificate
		reason string
	}{
		{"unknown authority", other.leaf(t, "secure.allowed.test"), "certificate"},
		{"wrong name", ca.leaf(t, "somewhere.else.test"), "somewhere.else.test"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := newTLSUpstream(t, tc.cert)
			e := httpsEnv(t, u, ca)
			rc := e.dial()
			rc.send("GET / HTTP/1.1\r\nHost: secure.allowed.test\r\n\r\n")
			resp, body := rc.read("GET")
			if resp.StatusCode != 502 || resp.Header.Get("X-Egressd") != "error" {
				t.Fatalf("got %d %q, want 502", resp.StatusCode, body)
			}
			mustContain(t, body, "certificate")
			mustContain(t, body, tc.reason)
			u.none(t)
			if n := e.counter("egressd_upstream_errors_total", "kind", "tls"); n != 1 {
				t.Errorf("tls error counter = %v", n)
			}
		})
	}
}

func TestTLSOriginationNeverFallsBackToPlain(t *testing.T) {
	ca := newTestCA(t)
	u := newUpstream(t, nil) // plain HTTP on a port the rule marks HTTPS
	e := httpsEnv(t, u, ca)
	rc := e.dial()
	rc.send("GET / HTTP/1.1\r\nHost: secure.allowed.test\r\n\r\n")
	if resp, body := rc.read("GET"); resp.StatusCode != 502 {
		t.Fatalf("got %d %q, want 502", resp.StatusCode, body)
	}
	u.none(t)
}

func TestTLSHandshakeTimeoutIs504(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers the ClientHello
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	defer func() {
		ln.Close()
		<-accepted
		for _, c := range held {
			c.Close()
		}
	}()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	e := newEnv(t, Config{
		Rules: compileRules(t, &rules.Rule{Name: "secure", Service: "*.allowed.test",
			Ports: []rules.Port{{Number: port, Protocol: rules.HTTPS}}}),
		OriginalDst:    fixedOrig{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)},
		ConnectTimeout: 200 * time.Millisecond,
	})
	rc := e.dial()
	rc.send("GET / HTTP/1.1\r\nHost: secure.allowed.test\r\n\r\n")
	resp, body := rc.read("GET")
	if resp.StatusCode != 504 {
		t.Fatalf("got %d %q, want 504", resp.StatusCode, body)
	}
	mustContain(t, body, "timed out")
}

// TestTLSOriginationToAnIPLiteral: for a rule naming an IP on an HTTPS port,
// the certificate must name that IP (an IP SAN); one from a trusted CA for
// another name is refused.
func TestTLSOriginationToAnIPLiteral(t *testing.T) {
	ca := newTestCA(t)
	for _, tc := range []struct {
		name   string
		cert   tls.Certificate
		status int
	}{
		{"certificate for another name", ca.leaf(t, "other.test"), 502},
		{"certificate for another IP", ca.leaf(t, "127.0.0.2"), 502},
		{"IP SAN", ca.leaf(t, "127.0.0.1"), 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newTLSUpstream(t, tc.cert)
			e := newEnv(t, Config{
				Rules: compileRules(t, &rules.Rule{Name: "ip", Service: "127.0.0.1",
					Ports: []rules.Port{{Number: u.port, Protocol: rules.HTTPS}}}),
				OriginalDst:   fixedOrig{u.orig()},
				RootCAs:       ca.pool,
				Dial:          (&net.Dialer{}).DialContext,
				AllowUpstream: []netip.Prefix{},
			})
			rc := e.dial()
			rc.send("GET /ip HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
			resp, body := rc.read("GET")
			if resp.StatusCode != tc.status {
				t.Fatalf("got %d %q, want %d", resp.StatusCode, body, tc.status)
			}
			if tc.status == 200 {
				u.next(t)
				return
			}
			mustContain(t, body, "certificate")
			u.none(t)
		})
	}
}

// An HTTPS upstream that speaks only HTTP/2 (it completes the handshake
// without ALPN, then drops the HTTP/1.1 request, as gRPC servers do): the
// 502 says why, instead of a bare EOF.
func TestTLSOriginationToAnH2OnlyUpstreamExplainsALPN(t *testing.T) {
	ca := newTestCA(t)
	cert := ca.leaf(t, "a.allowed.test")
	u := newScriptedUpstream(t, &cert, func(u *scriptedUpstream, i int, c net.Conn, br *bufio.Reader) {
		br.ReadByte() // "GET ..." is not the HTTP/2 preface: close
	})
	e := scriptedEnv(t, u, ca)
	rc := e.dial()
	rc.send("GET / HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
	resp, body := rc.read("GET")
	if resp.StatusCode != 502 {
		t.Fatalf("got %d %q, want 502", resp.StatusCode, body)
	}
	mustContain(t, body, "it may speak only HTTP/2")
}
