package main

import (
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/egressd/egressd/internal/handover"
	"github.com/egressd/egressd/internal/metric"
	"github.com/egressd/egressd/l7"
	"github.com/egressd/egressd/rules"
)

// What `egressd run` and `egressd gateway` share: the rules, reloaded on
// change and on SIGHUP; the metrics registry; the serve loop and the drain
// on SIGTERM.

// loadRules catches SIGHUP from the start (its default action would kill
// the process) and loads the rules at path for reloading. check, if not
// nil, vets the first version and every reload (rules.ReloaderOptions.Check).
// stop releases the signal.
// Every version put in force afterwards is handed to hook's proxy.
func loadRules(path string, log *slog.Logger, check func(*rules.Set) error, hook *reloadHook) (r *rules.Reloader, hup <-chan os.Signal, stop func(), err error) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGHUP)
	hook.log = log
	r, err = rules.NewReloader([]string{path}, rules.ReloaderOptions{Logger: log, Check: check, OnReload: hook.onReload})
	if err != nil {
		signal.Stop(c)
		return nil, nil, nil, err
	}
	return r, c, func() { signal.Stop(c) }, nil
}

// reloadHook re-decides the proxy's long-lived connections after every
// reload that put a new rule set in force (l7.Proxy.Redecide: the spliced
// connections the new rules do not allow are closed). The proxy is set
// once it exists; reloads only start after that (serve).
type reloadHook struct {
	proxy atomic.Pointer[l7.Proxy]
	log   *slog.Logger
}

func (h *reloadHook) onReload(err error) {
	p := h.proxy.Load()
	if err != nil || p == nil {
		return
	}
	if n := p.Redecide(); n > 0 {
		h.log.Info("rules changed: closed the spliced connections no rule allows any more", "closed", n)
	}
}

// routeStdLog sends what is printed through the standard log package into
// log, as warnings marked via=go-log: x/net's HTTP/2 transport has no
// logger to give and prints there ("protocol error: received DATA on a
// HEAD request"), which would otherwise reach stderr as unstructured text.
func routeStdLog(log *slog.Logger) {
	stdlog.SetFlags(0)
	stdlog.SetOutput(slog.NewLogLogger(log.With("via", "go-log").Handler(), slog.LevelWarn).Writer())
}

// newRegistry is the metrics registry of the admin endpoint: Go runtime,
// process and rules collectors (the proxy and redirect add theirs).
func newRegistry(sets func() []ruleSetStats) *metric.Registry {
	reg := metric.NewRegistry()
	reg.MustRegister(metric.NewGoCollector(), metric.NewProcessCollector(), rulesCollector{sets})
	return reg
}

// ruleWatcher is the rule files serve watches and reloads on SIGHUP: a
// *rules.Reloader, or ruleSources.
type ruleWatcher interface {
	Watch(ctx context.Context) error
	Reload() error
}

// serve reloads rules on change and SIGHUP until ctx ends, the proxy
// fails or a successor took over (succ: nil for none, as in the gateway),
// then shuts the proxy down gracefully (drain).
func serve(ctx context.Context, shutdownTimeout time.Duration, reloader ruleWatcher, proxy *l7.Proxy,
	serveErr <-chan error, hup <-chan os.Signal, ready *readiness, succ *succession, log *slog.Logger) error {
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() {
		if err := reloader.Watch(watchCtx); err != nil {
			log.Error("rules: watching for changes failed; SIGHUP still reloads", "err", err)
		}
	}()
	succeeding := false // a successor holds the sockets and is taking over
	for {
		select {
		case <-hup:
			log.Info("SIGHUP: reloading rules")
			_ = reloader.Reload() // logs and counts a refused version itself
		case err := <-serveErr:
			ready.listening.Store(false)
			return fmt.Errorf("proxy: %w", err)
		case e := <-succ.events():
			switch e {
			case handover.Offered:
				succeeding = true
			case handover.Failed:
				succeeding = false
			case handover.HandedOver:
				return handedOver(ctx, shutdownTimeout, proxy, serveErr, ready, succ, log)
			}
		case <-ctx.Done():
			// Not succeeding alone: the Offered event may still be in the
			// channel, which select picks from at random when the signal
			// is there too (an agent drained on its own once, with its
			// successor already holding the sockets, in TestE2EHandOver).
			if succeeding || succ.offering() {
				log.Info("shutting down once the successor taking over is ready (or failed)", "timeout", shutdownTimeout)
				if succ.await(shutdownTimeout) == handover.HandedOver {
					return handedOver(ctx, shutdownTimeout, proxy, serveErr, ready, succ, log)
				}
			}
			succ.close() // no successor takes over a draining agent
			return drain(shutdownTimeout, proxy, serveErr, ready, log)
		}
	}
}

// handedOver stops serving the admin socket, drains, and then waits for ctx
// to end: under Kubernetes an agent that exited would be restarted, and
// take the sockets back.
func handedOver(ctx context.Context, shutdownTimeout time.Duration, proxy *l7.Proxy,
	serveErr <-chan error, ready *readiness, succ *succession, log *slog.Logger) error {
	log.Info("hand-over: the successor serves; no longer accepting here")
	succ.stopAdmin()
	err := drain(shutdownTimeout, proxy, serveErr, ready, log)
	if ctx.Err() == nil {
		log.Info("hand-over: drained; waiting for SIGTERM")
		<-ctx.Done()
	}
	return err
}

// shutdownGrace is how long past --shutdown-timeout drain waits for the
// proxy to finish cutting connections before exiting regardless.
const shutdownGrace = time.Second

// drain stops accepting and waits for requests in flight, at most timeout
// (plus shutdownGrace).
func drain(timeout time.Duration, proxy *l7.Proxy, serveErr <-chan error, ready *readiness, log *slog.Logger) error {
	ready.stopping.Store(true)
	log.Info("shutting down: no new connections, finishing requests in flight", "timeout", timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// Shutdown closes the listener at once, then waits for requests in
	// flight; past the timeout it cuts their client and upstream
	// connections. An upstream dial under way may still hold it up to the
	// connect timeout: the timeout is a bound, so stop waiting a moment
	// later and let the exit close the rest.
	done := make(chan error, 1)
	go func() { done <- proxy.Shutdown(ctx) }()
	if serr := <-serveErr; !errors.Is(serr, l7.ErrProxyClosed) {
		log.Warn("proxy stopped with an error", "err", serr)
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(timeout + shutdownGrace):
		err = errors.New("requests still waiting on their upstreams")
	}
	if err != nil {
		return fmt.Errorf("shutdown: connections still open after %v were cut: %w", timeout, err)
	}
	log.Info("stopped")
	return nil
}
