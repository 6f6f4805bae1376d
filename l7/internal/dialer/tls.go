package dialer

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
)

// TLSConfig is the client TLS configuration for originating TLS to
// serverName (a DNS name or an IP literal): the chain and the name are
// verified against the system roots and Config.RootCAs; there is no way to
// skip verification.
func (d *Dialer) TLSConfig(serverName string, alpn []string) *tls.Config {
	return &tls.Config{
		ServerName:         serverName,
		NextProtos:         alpn,
		MinVersion:         tls.VersionTLS12,
		ClientSessionCache: d.tlsSess,
		// Verification is done in VerifyConnection (never skipped) so that
		// both the system pool and RootCAs are tried.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return d.verifyPeer(serverName, cs)
		},
	}
}

// verifyPeer verifies the server's chain and that it names name (a DNS
// name, or an IP literal against the IP SANs), against the system roots,
// then against Config.RootCAs. name is the configured one, never
// ConnectionState.ServerName, which Go leaves empty for IP literals (no SNI
// is sent for them): an empty name would check no name at all.
func (d *Dialer) verifyPeer(name string, cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: server sent no certificate")
	}
	if name == "" {
		return errors.New("tls: no server name to verify")
	}
	opts := x509.VerifyOptions{DNSName: name, Intermediates: x509.NewCertPool()}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(opts)
	if err == nil || d.cfg.RootCAs == nil {
		return err
	}
	opts.Roots = d.cfg.RootCAs
	if _, err2 := cs.PeerCertificates[0].Verify(opts); err2 != nil {
		var hn x509.HostnameError
		if errors.As(err2, &hn) {
			return err2
		}
		return err
	}
	return nil
}
