package h2c

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

func TestGRPCFailureCode(t *testing.T) {
	start := time.Now().Add(-time.Second)
	req := func(timeout string) *http.Request {
		return &http.Request{Header: http.Header{"Grpc-Timeout": {timeout}}}
	}
	tests := []struct {
		name   string
		err    error
		status int
		r      *http.Request
		want   int
	}{
		{"cancel after the deadline", http2.StreamError{Code: http2.ErrCodeCancel}, 502, req("500m"), grpcDeadlineExceeded},
		{"cancel before the deadline", http2.StreamError{Code: http2.ErrCodeCancel}, 502, req("5S"), grpcCancelled},
		{"cancel, bad timeout", http2.StreamError{Code: http2.ErrCodeCancel}, 502, req("5x"), grpcCancelled},
		{"refused", fmt.Errorf("wrapped: %w", http2.StreamError{Code: http2.ErrCodeRefusedStream}), 502, req(""), grpcUnavailable},
		{"internal", http2.StreamError{Code: http2.ErrCodeInternal}, 502, req(""), grpcInternal},
		{"timeout", context.DeadlineExceeded, 504, req(""), grpcDeadlineExceeded},
		{"connect", errors.New("connection refused"), 502, req(""), grpcUnavailable},
	}
	for _, tt := range tests {
		if got := failureCode(tt.err, tt.status, tt.r, start); got != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, got, tt.want)
		}
	}
}
