package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/egressd/egressd/internal/metric"
)

// readiness is what /readyz reports: ready only while the BPF programs are
// attached and the proxy listens, and not once shutdown has begun.
type readiness struct {
	// links reports whether the programs are still attached (redirect's
	// Check); nil: not attached yet.
	links     atomic.Pointer[func() error]
	listening atomic.Bool
	stopping  atomic.Bool
	mode      string // enforce or audit, told in /readyz's body
}

// attached makes /readyz ask check whether the programs are still attached.
func (r *readiness) attached(check func() error) { r.links.Store(&check) }

// notReady says why the agent is not ready, or "" when it is.
func (r *readiness) notReady() string {
	switch {
	case r.stopping.Load():
		return "shutting down"
	case r.links.Load() == nil:
		return "BPF programs not attached"
	case !r.listening.Load():
		return "proxy not listening"
	}
	if err := (*r.links.Load())(); err != nil {
		return "BPF programs not attached: " + err.Error()
	}
	return ""
}

// adminHandler serves /metrics from reg, /healthz (the process is alive and
// serving HTTP), /readyz and what more adds (the agent's /exempt).
func adminHandler(reg *metric.Registry, ready *readiness, log *slog.Logger, more ...func(*http.ServeMux)) http.Handler {
	mux := http.NewServeMux()
	for _, add := range more {
		add(mux)
	}
	mux.Handle("GET /metrics", metric.Handler(reg, log)) // counts its own errors in reg
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if why := ready.notReady(); why != "" {
			http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
		if ready.mode != "" {
			fmt.Fprintln(w, "mode:", ready.mode)
		}
	})
	return mux
}

// adminServer is the running admin HTTP server.
type adminServer struct {
	srv      *http.Server
	ln       net.Listener // handed to a successor agent (handover.go)
	addr     net.Addr
	done     chan struct{} // closed when Serve has returned
	serveErr error
}

// startAdmin listens on addr and serves h in the background.
func startAdmin(addr string, h http.Handler, log *slog.Logger) (*adminServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	return serveAdmin(ln, h, log), nil
}

// serveAdmin serves h on ln in the background (ln: bound by startAdmin,
// or handed over by the previous agent).
func serveAdmin(ln net.Listener, h http.Handler, log *slog.Logger) *adminServer {
	a := &adminServer{
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 5 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
		ln:   ln,
		addr: ln.Addr(),
		done: make(chan struct{}),
	}
	go func() {
		a.serveErr = a.srv.Serve(ln)
		close(a.done)
	}()
	return a
}

// shutdown stops the server, waiting for scrapes in flight up to ctx. It may
// be called more than once.
func (a *adminServer) shutdown(ctx context.Context) error {
	err := a.srv.Shutdown(ctx)
	<-a.done
	if !errors.Is(a.serveErr, http.ErrServerClosed) && err == nil {
		err = a.serveErr
	}
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	return nil
}
