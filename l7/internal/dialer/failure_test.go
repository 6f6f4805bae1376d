package dialer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/egressd/egressd/l7/internal/addrpolicy"
	"github.com/egressd/egressd/l7/internal/h1"
)

// TestFailure: each kind of upstream error becomes its status and
// egressd_upstream_errors_total kind, also when wrapped.
func TestFailure(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		kind   string
	}{
		{&addrpolicy.RefusedError{Code: "loopback"}, 403, "address_refused"},
		{ErrNoEgressProxy, 502, "egress_proxy"},
		{&net.DNSError{Err: "no such host", Name: "x.example"}, 502, "dns"},
		{&net.DNSError{Err: "timeout", Name: "x.example", IsTimeout: true}, 504, "dns"},
		{fmt.Errorf("dial: %w", context.DeadlineExceeded), 504, "timeout"},
		{fmt.Errorf("read: %w", h1.ErrMalformedResponse), 502, "protocol"},
		{&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, 502, "connect"},
		{io.ErrUnexpectedEOF, 502, "io"},
	} {
		status, kind, reason := Failure(tc.err)
		if status != tc.status || kind != tc.kind || reason == "" {
			t.Errorf("Failure(%v) = %d, %q, %q; want %d, %q and a reason", tc.err, status, kind, reason, tc.status, tc.kind)
		}
	}
}
