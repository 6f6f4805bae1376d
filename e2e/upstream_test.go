package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// recorder remembers the local address every upstream request arrived on.
type recorder struct {
	mu   sync.Mutex
	seen map[netip.Addr]int
}

func (r *recorder) add(local netip.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[netip.Addr]int{}
	}
	r.seen[local.Unmap()]++
}

// count returns how many requests arrived on addr.
func (r *recorder) count(addr netip.Addr) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[addr]
}

// echo answers with what it received, one "key: value" line each, so that
// tests assert on what the upstream really saw. /slow?ms=N waits first.
func echo(rec *recorder) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		var la netip.AddrPort
		if local != nil {
			la, _ = netip.ParseAddrPort(local.String())
		}
		rec.add(la.Addr())
		if ms, err := strconv.Atoi(r.URL.Query().Get("ms")); err == nil && r.URL.Path == "/slow" {
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
		body, _ := io.ReadAll(r.Body)
		sni := ""
		if r.TLS != nil {
			sni = r.TLS.ServerName
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "proto: %s\nhost: %s\npath: %s\nlocal: %s\ntls: %t\nsni: %s\nbody: %d\n",
			r.Proto, r.Host, r.URL.Path, la.Addr().Unmap(), r.TLS != nil, sni, len(body))
	})
}

// testCA is a CA made for one test run and a server certificate it signed.
type testCA struct {
	pem  []byte // the CA certificate, for egressd --ca-file
	cert tls.Certificate
}

func newTestCA(t *testing.T, names ...string) *testCA {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "egressd e2e CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{
		pem:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
	}
}

// serveHTTP serves h on ln until the test ends: HTTP/1.1, plus h2c when
// h2c is set, over TLS when cert is not nil.
func serveHTTP(t *testing.T, ln net.Listener, h http.Handler, h2c bool, cert *tls.Certificate) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	if h2c {
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	if cert != nil {
		srv.Protocols.SetHTTP2(true)
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*cert}, NextProtos: []string{"h2", "http/1.1"}})
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// grpcService is the gRPC interop TestService, as much of it as the tests
// call: UnaryCall echoes the payload size, FullDuplexCall answers every
// message.
type grpcService struct {
	testpb.UnimplementedTestServiceServer
	rec *recorder
}

func (s *grpcService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: make([]byte, req.GetResponseSize())}}, nil
}

func (s *grpcService) FullDuplexCall(stream testpb.TestService_FullDuplexCallServer) error {
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		size := int32(0)
		if ps := req.GetResponseParameters(); len(ps) > 0 {
			size = ps[0].GetSize()
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, size)}}); err != nil {
			return err
		}
	}
}

func serveGRPC(t *testing.T, ln net.Listener) {
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, &grpcService{})
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
}

// dnsAnswers resolves every name under .test. to one IPv4 and one IPv6
// address; anything else is NXDOMAIN.
type dnsAnswers struct {
	v4, v6 netip.Addr
}

func (d dnsAnswers) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	for _, q := range req.Question {
		if !strings.HasSuffix(strings.ToLower(q.Name), ".test.") {
			m.Rcode = dns.RcodeNameError
			continue
		}
		hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: 5}
		switch q.Qtype {
		case dns.TypeA:
			hdr.Rrtype = dns.TypeA
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: d.v4.AsSlice()})
		case dns.TypeAAAA:
			hdr.Rrtype = dns.TypeAAAA
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: d.v6.AsSlice()})
		}
	}
	w.WriteMsg(m)
}

// serveDNS answers on the UDP and TCP sockets given until the test ends.
func serveDNS(t *testing.T, pc net.PacketConn, ln net.Listener, h dns.Handler) {
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: ln, Handler: h}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	t.Cleanup(func() {
		udp.Shutdown()
		tcp.Shutdown()
	})
}
