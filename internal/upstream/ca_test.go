package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
)

// The server certificate and key written as files (for servers that read
// them) load back, and the certificate verifies against the CA for a DNS
// name, a wildcard and an IP address.
func TestCAServerPEM(t *testing.T) {
	ca, err := NewCA("exact.test", "*.zone.test", "198.18.0.2")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.ServerPEM()
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("load the written pair: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.PEM)
	for _, name := range []string{"exact.test", "a.zone.test", "198.18.0.2"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
}
