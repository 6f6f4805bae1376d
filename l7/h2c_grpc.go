package l7

import (
	"net/http"
	"strconv"
	"strings"
)

// isGRPC reports a gRPC request: content-type application/grpc, alone or
// with a +subtype or parameters.
func isGRPC(h http.Header) bool {
	ct := h.Get("Content-Type")
	const g = "application/grpc"
	if len(ct) < len(g) || !strings.EqualFold(ct[:len(g)], g) {
		return false
	}
	return len(ct) == len(g) || ct[len(g)] == '+' || ct[len(g)] == ';'
}

// gRPC status codes the proxy answers with (google.golang.org/grpc/codes).
const (
	grpcInvalidArgument  = 3
	grpcDeadlineExceeded = 4
	grpcPermissionDenied = 7
	grpcUnavailable      = 14
)

// writeRefusal answers a stream the proxy does not forward: status with a
// one-line text body, or, for gRPC, a trailers-only response (HTTP 200 and
// one HEADERS frame) whose grpc-status is the gRPC equivalent of status and
// whose grpc-message is reason. It returns status, which the access log
// records in both cases.
func writeRefusal(w http.ResponseWriter, grpc bool, status int, reason string) int {
	h := w.Header()
	if !grpc {
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(status)
		_, _ = w.Write([]byte("egressd: " + reason + "\n"))
		return status
	}
	code := grpcUnavailable
	switch status {
	case http.StatusForbidden:
		code = grpcPermissionDenied
	case http.StatusBadRequest:
		code = grpcInvalidArgument
	case http.StatusGatewayTimeout:
		code = grpcDeadlineExceeded
	}
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(code))
	h.Set("Grpc-Message", grpcEncodeMessage("egressd: "+reason))
	w.WriteHeader(http.StatusOK)
	return status
}

// grpcEncodeMessage percent-encodes a grpc-message value as the gRPC HTTP/2
// protocol asks: every byte outside printable ASCII, and '%'.
func grpcEncodeMessage(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c <= 0x7e && c != '%' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}
