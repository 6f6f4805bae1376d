package bridge

import (
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/tcptest"
)

type result struct {
	in, out int64
	err     error
}

// TestConnsHalfClose: the client's EOF half-closes the upstream, the
// upstream may still answer, and its EOF ends the splice cleanly with the
// bytes counted each way.
func TestConnsHalfClose(t *testing.T) {
	client, proxyClient := tcptest.Pair(t)
	proxyUp, up := tcptest.Pair(t)
	done := make(chan result, 1)
	go func() {
		in, out, err := Conns(proxyClient, proxyClient, proxyUp, 5*time.Second)
		done <- result{in, out, err}
	}()
	client.Write([]byte("request"))
	client.CloseWrite()
	got, err := io.ReadAll(up) // ends at the half-close passed on
	if err != nil || string(got) != "request" {
		t.Fatalf("upstream read %q, %v", got, err)
	}
	up.Write([]byte("answer!!"))
	up.Close()
	got, err = io.ReadAll(client)
	if err != nil || string(got) != "answer!!" {
		t.Fatalf("client read %q, %v", got, err)
	}
	r := <-done
	if r.err != nil || r.in != 7 || r.out != 8 {
		t.Fatalf("Conns = %d in, %d out, %v; want 7, 8, nil", r.in, r.out, r.err)
	}
}

// TestConnsGrace: once the client's direction ended, an upstream that
// stays open and silent is cut after the grace.
func TestConnsGrace(t *testing.T) {
	client, proxyClient := tcptest.Pair(t)
	proxyUp, _ := tcptest.Pair(t)
	done := make(chan result, 1)
	go func() {
		in, out, err := Conns(proxyClient, proxyClient, proxyUp, 50*time.Millisecond)
		done <- result{in, out, err}
	}()
	client.CloseWrite()
	select {
	case r := <-done:
		if !errors.Is(r.err, os.ErrDeadlineExceeded) {
			t.Fatalf("Conns = %v, want the grace's deadline", r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a silent half-open upstream held the splice")
	}
}
