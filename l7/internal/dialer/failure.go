package dialer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"

	"github.com/egressd/egressd/l7/internal/addrpolicy"
	"github.com/egressd/egressd/l7/internal/h1"
)

// Failure classifies an error met while dialing or talking to an
// upstream: the status for the client (502, or 504 for timeouts), the kind
// for egressd_upstream_errors_total, and a reason for the client and the
// log. It is the one place where upstream errors become statuses.
func Failure(err error) (status int, kind, reason string) {
	var (
		epErr   *EgressProxyError
		dnsErr  *net.DNSError
		certErr *tls.CertificateVerificationError
		hostErr x509.HostnameError
		uaErr   x509.UnknownAuthorityError
		ciErr   x509.CertificateInvalidError
		recErr  tls.RecordHeaderError
		alert   tls.AlertError
		ne      net.Error
		refused *addrpolicy.RefusedError
	)
	switch {
	case errors.As(err, &refused): // l7/internal/addrpolicy, before egress_proxy: the egress proxy's address may be the one
		return 403, "address_refused", refused.Error()
	case errors.Is(err, ErrNoEgressProxy):
		return 502, "egress_proxy", err.Error()
	case errors.As(err, &epErr): // egressproxy.go: unreachable, TLS, refused CONNECT, 407
		return 502, "egress_proxy", err.Error()
	case errors.As(err, &certErr), errors.As(err, &hostErr), errors.As(err, &uaErr), errors.As(err, &ciErr):
		return 502, "tls", "upstream certificate rejected: " + err.Error()
	case errors.As(err, &recErr), errors.As(err, &alert):
		return 502, "tls", "upstream TLS handshake failed: " + err.Error()
	case errors.As(err, &dnsErr):
		if dnsErr.IsTimeout {
			return 504, "dns", "resolving upstream timed out: " + err.Error()
		}
		return 502, "dns", "resolving upstream failed: " + err.Error()
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return 504, "timeout", "upstream timed out: " + err.Error()
	case errors.Is(err, h1.ErrMalformedResponse):
		return 502, "protocol", "invalid upstream response: " + err.Error()
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return 502, "connect", "connecting to upstream failed: " + err.Error()
	}
	return 502, "io", "upstream connection failed: " + err.Error()
}
