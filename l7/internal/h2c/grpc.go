package h2c

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2"
)

// IsGRPC reports a gRPC request: content-type application/grpc, alone or
// with a +subtype or parameters.
func IsGRPC(h http.Header) bool {
	ct := h.Get("Content-Type")
	const g = "application/grpc"
	if len(ct) < len(g) || !strings.EqualFold(ct[:len(g)], g) {
		return false
	}
	return len(ct) == len(g) || ct[len(g)] == '+' || ct[len(g)] == ';'
}

// gRPC status codes the proxy answers with (google.golang.org/grpc/codes).
const (
	grpcCancelled         = 1
	grpcInvalidArgument   = 3
	grpcDeadlineExceeded  = 4
	grpcPermissionDenied  = 7
	grpcResourceExhausted = 8
	grpcInternal          = 13
	grpcUnavailable       = 14
)

// WriteLocal answers a stream with a response egressd makes itself, as
// l7's HTTP/1 path does: status, an X-Egressd marker and the
// text "egressd: msg"; for gRPC a trailers-only response (HTTP 200, one
// HEADERS frame) whose grpc-status is the gRPC equivalent of status and
// whose grpc-message is the text. e gets what the client got: the status
// (200 for gRPC, with the grpc-status) and the bytes sent.
func (s *Server) WriteLocal(w http.ResponseWriter, e *Record, grpc bool, status int, msg string) {
	marker := s.cfg.Markers.Error
	switch status {
	case http.StatusForbidden:
		marker = s.cfg.Markers.Denied
	case http.StatusBadRequest:
		marker = s.cfg.Markers.Invalid
	}
	h := w.Header()
	h.Set("X-Egressd", marker)
	if grpc {
		code := grpcUnavailable
		switch status {
		case http.StatusForbidden:
			code = grpcPermissionDenied
		case http.StatusBadRequest:
			code = grpcInvalidArgument
		case http.StatusGatewayTimeout:
			code = grpcDeadlineExceeded
		}
		setGRPCStatus(w, e, false, code, msg)
		return
	}
	e.Status = status
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	n, _ := w.Write([]byte("egressd: " + msg + "\n"))
	e.BytesOut = int64(n)
}

// setGRPCStatus ends a gRPC stream with code and msg: as trailers after a
// head already written, else as a trailers-only response (HTTP 200). e
// records what the client gets.
func setGRPCStatus(w http.ResponseWriter, e *Record, headWritten bool, code int, msg string) {
	h := w.Header()
	msg = grpcEncodeMessage("egressd: " + msg)
	e.GRPCStatus = strconv.Itoa(code)
	if headWritten {
		h[http.TrailerPrefix+"Grpc-Status"] = []string{strconv.Itoa(code)}
		h[http.TrailerPrefix+"Grpc-Message"] = []string{msg}
		return
	}
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(code))
	h.Set("Grpc-Message", msg)
	e.Status = http.StatusOK
	w.WriteHeader(http.StatusOK)
}

// failureCode is the gRPC status for a call whose upstream exchange
// failed with err (status: the HTTP status the proxy would answer). A reset
// stream maps as gRPC clients map RST_STREAM codes, and a CANCEL once the
// call's grpc-timeout has passed (grpc-go servers reset on their deadline)
// is DEADLINE_EXCEEDED, as the client would have concluded itself.
func failureCode(err error, status int, r *http.Request, start time.Time) int {
	var se http2.StreamError
	if errors.As(err, &se) {
		switch se.Code {
		case http2.ErrCodeCancel:
			if d, ok := grpcDeadline(r.Header.Get("Grpc-Timeout"), start); ok && !time.Now().Before(d) {
				return grpcDeadlineExceeded
			}
			return grpcCancelled
		case http2.ErrCodeRefusedStream:
			return grpcUnavailable
		case http2.ErrCodeEnhanceYourCalm:
			return grpcResourceExhausted
		case http2.ErrCodeInadequateSecurity:
			return grpcPermissionDenied
		}
		return grpcInternal
	}
	if status == http.StatusGatewayTimeout {
		return grpcDeadlineExceeded
	}
	return grpcUnavailable
}

// grpcDeadline decodes a grpc-timeout value ("100m": up to 8 digits and a
// unit of H, M, S, m, u or n) into a deadline counted from start.
func grpcDeadline(v string, start time.Time) (time.Time, bool) {
	if len(v) < 2 || len(v) > 9 {
		return time.Time{}, false
	}
	n, err := strconv.ParseUint(v[:len(v)-1], 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return time.Time{}, false
	}
	return start.Add(time.Duration(n) * unit), true
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
