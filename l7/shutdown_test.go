package l7

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"
	"time"
)

// stuckUpstream is a handler that reports each request on got and then
// answers nothing until the test ends.
func stuckUpstream(t *testing.T) (http.HandlerFunc, chan struct{}) {
	got, release := make(chan struct{}, 4), make(chan struct{})
	t.Cleanup(func() { close(release) })
	return func(w http.ResponseWriter, r *http.Request) {
		got <- struct{}{}
		<-release
	}, got
}

// shutdownAtDeadline waits until the upstream holds a request, then shuts
// the proxy down with a short deadline: Shutdown must give up on the
// request blocked on its upstream and return, well within the 60 s
// ResponseTimeout it would otherwise wait for.
func shutdownAtDeadline(t *testing.T, e *env, got chan struct{}) {
	t.Helper()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the request did not reach the upstream")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.p.Shutdown(ctx) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v, want the deadline", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown still waiting for a request blocked on its upstream after its deadline")
	}
}

func TestShutdownDeadlineCutsUpstreams(t *testing.T) {
	t.Run("http1", func(t *testing.T) {
		h, got := stuckUpstream(t)
		e, _ := allowEnv(t, h)
		rc := e.dial()
		rc.send("GET / HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
		shutdownAtDeadline(t, e, got)
		rc.cut()
	})
	t.Run("h2c", func(t *testing.T) {
		h, got := stuckUpstream(t)
		e, u, _ := h2cEnv(t, h)
		client, _ := h2cClient(t, e)
		failed := make(chan error, 1)
		go func() {
			resp, err := client.Get(fmt.Sprintf("http://api.allowed.test:%d/", u.port))
			if err == nil {
				resp.Body.Close()
			}
			failed <- err
		}()
		shutdownAtDeadline(t, e, got)
		<-failed
	})
	gateway := func(t *testing.T, req string) {
		h, got := stuckUpstream(t)
		u := newUpstream(t, h)
		e := newGateway(t, nil, httpRule("wild", "*.allowed.test", u.port))
		rc := e.dial()
		rc.send(fmt.Sprintf(req, u.port, u.port))
		shutdownAtDeadline(t, e, got)
		rc.cut()
	}
	t.Run("gateway absolute-form", func(t *testing.T) {
		gateway(t, "GET http://a.allowed.test:%d/ HTTP/1.1\r\nHost: a.allowed.test:%d\r\n\r\n")
	})
	t.Run("gateway tunnel", func(t *testing.T) {
		gateway(t, "CONNECT a.allowed.test:%d HTTP/1.1\r\nHost: a.allowed.test:%d\r\n\r\nGET / HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
	})
}

// cut asserts the proxy closed the client connection (whatever it said first).
func (rc *rawClient) cut() {
	rc.t.Helper()
	rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, rc.br); errors.Is(err, os.ErrDeadlineExceeded) {
		rc.t.Error("client connection still open")
	}
}
