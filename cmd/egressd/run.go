package main

import (
	"cmp"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sync/atomic"
	"syscall"

	"github.com/egressd/egressd/l7"
	"github.com/egressd/egressd/redirect"
	"github.com/egressd/egressd/rules"
)

// runCmd is `egressd run`: the agent.
func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseRunFlags(args, os.LookupEnv, stderr)
	if err != nil {
		return err
	}
	log := newLogger(cfg.LogFormat, stderr)
	routeStdLog(log) // serve.go
	if cfg.Uninstall {
		if err := redirect.Uninstall(cfg.PinDir); err != nil {
			return err
		}
		log.Info("uninstalled: programs detached, pins removed")
		return nil
	}
	access := newAccessLog(cfg.AccessLog, cfg.LogFormat, stderr)
	cfg.accessLog = access.logger
	err = runAgent(ctx, cfg, log)
	_ = access.close() // the lines still waiting, before the last words below
	if err != nil && cfg.LogFormat == "json" {
		// Keep stderr machine-readable; main prints the error as text otherwise.
		log.Error("egressd run failed", "err", err.Error())
		return exitError{exitFailure}
	}
	return err
}

func newLogger(format string, w io.Writer) *slog.Logger {
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

// runAgent loads the rules, serves the admin endpoints, listens (or takes
// the listening sockets over from the agent serving the port: handover.go),
// attaches the BPF programs and proxies until ctx ends (SIGTERM/SIGINT), or
// a successor took over, then drains.
//
// Order matters: the proxy port is bound (or held) before the programs are
// attached, so a redirected connect never meets a closed port because of
// us; the previous agent stops accepting only once this one serves; the
// readiness flags follow the real state.
func runAgent(ctx context.Context, cfg *runConfig, log *slog.Logger) error {
	var hook reloadHook
	reloader, hup, stopHUP, err := loadRules(cfg.Rules, log, egressProxyCheck(cfg.EgressProxy), &hook) // serve.go
	if err != nil {
		return err
	}
	defer stopHUP()
	// Checked after the rules, so invalid rules are reported (exit 1) even
	// on a command line that lacks --cgroup.
	if len(cfg.Cgroups) == 0 {
		return fmt.Errorf("%w: at least one --cgroup is required (the cgroup v2 directory whose processes egressd redirects)", errUsage)
	}
	if cfg.DenyUDP {
		log.Warn("--deny-udp is deprecated and has no effect: UDP from the cgroups is refused by default but DNS to --dns-server; allow more with --allow-udp")
	}
	dnsServers := dnsServers(cfg, log) // dnsservers.go
	mark := cfg.SocketMark
	if mark == 0 {
		mark = defaultSocketMark
	}
	var own ownSockets
	proxyCfg, err := proxyConfig(cfg, reloader, mark, own.control, log)
	if err != nil {
		return err
	}
	limits := applyProcessLimits(cfg, log) // limits.go
	proxyCfg.MaxConns = limits.maxConns

	var ka *kubeAgent // kube.go
	if cfg.Kubernetes {
		if ka, err = startKube(ctx, cfg, reloader, egressProxyCheck(cfg.EgressProxy), &hook, log); err != nil {
			return err
		}
		proxyCfg.Rules = ka.rules.Global()
		proxyCfg.Scopes = ka.scoper
	}
	scopes, err := newCgroupScopes(cfg.CgroupRules, cfg.Cgroups, reloader, egressProxyCheck(cfg.EgressProxy), &hook, log) // scopes.go
	if err != nil {
		return err
	}
	watched := ruleSources{reloader}
	for _, s := range scopes.scopes {
		watched = append(watched, s.own)
	}
	if len(scopes.scopes) > 0 {
		proxyCfg.Scopes = scopes
	}
	reg := newRegistry(func() []ruleSetStats {
		sets := []ruleSetStats{reloaderStats("", reloader)}
		for _, s := range scopes.scopes {
			sets = append(sets, reloaderStats(s.dir, s.own))
		}
		return append(sets, ka.stats()...)
	})
	proxyCfg.Metrics = reg
	ready := readiness{mode: cmp.Or(cfg.Mode, "enforce")}
	lns, err := acquireListeners(cfg, log) // handover.go: from the agent serving the port, or bound here
	if err != nil {
		return err
	}
	defer lns.close()
	// A handed-over admin socket is served once this agent is ready: until
	// then the previous agent answers the probes.
	var admin *adminServer
	exemptEP := &exemptEndpoint{} // exemptpods.go: GET /exempt
	if lns.admin == nil {
		if admin, err = startAdmin(cfg.Admin, adminHandler(reg, &ready, log, exemptEP.register), log); err != nil {
			return err
		}
		defer admin.shutdown(context.Background())
	}

	red, err := redirect.Attach(redirect.Options{
		Cgroups: cfg.Cgroups, ExemptCgroups: cfg.ExemptCgroups, ExemptSelf: true, ProxyPort: cfg.ProxyPort, NodeAddrs: cfg.NodeAddrs, ExcludeCIDRs: cfg.ExcludeCIDRs,
		DNSServers: dnsServers, AllowUDP: cfg.AllowUDP, PinDir: cfg.PinDir, Logger: log,
	})
	if err != nil {
		return err
	}
	defer red.Close() // keeps the pins: connects stay redirected (and refused) until the next agent
	own.red.Store(red)
	if g := red.Guards(); g.PacketSockets != nil {
		log.Warn("a process with CAP_NET_RAW in the attached cgroups can send frames through a packet socket that no egressd hook sees; drop CAP_NET_RAW from the workloads", "packet_guard", "off", "reason", g.PacketSockets)
	}
	if g := red.Guards(); g.SourceRoutes != nil {
		log.Warn("a process in the attached cgroups can send packets along a source route (IPv6 routing header; IPv4 options with CAP_NET_RAW) to a first hop no egressd hook judged", "source_route", "off", "reason", g.SourceRoutes)
	}
	ready.attached(red.Check)
	reg.MustRegister(redirectCollector{red})
	if ka != nil {
		// The pods were listed before the attach (startKube): the exempt
		// pods' cgroups are in the map from the first Sync, moments from
		// now, and the previous agent's entries stay until then.
		startPodExemptions(ctx, &cfg.PodExempt, ka.pods, red, exemptEP, log)
	}

	proxyCfg.OriginalDst = originalDst{red} // limits.go: with the cgroup, for per-client limits
	proxy, err := l7.New(proxyCfg)
	if err != nil {
		return err
	}
	hook.proxy.Store(proxy)
	serveErr := make(chan error, 1)
	go func() { serveErr <- proxy.Serve(lns.proxy) }()
	// Logged before /readyz can say ready, so a probe that sees ready finds
	// the line (a handed-over admin socket is served only after this).
	adminAddr := lns.admin
	if admin != nil {
		adminAddr = admin.ln
	}
	log.Info("egressd running", "mode", cfg.Mode, "proxy", lns.proxy.Addr().String(), "admin", adminAddr.Addr().String(),
		"cgroups", cfg.Cgroups, "rules", reloader.Current().Len(), "dial", cfg.Dial,
		"max_conns", limits.maxConns, "max_conns_per_client", cmp.Or(cfg.MaxConnsPerClient, l7.DefaultMaxConnsPerClient),
		"nofile", limits.nofile, "memory_limit", limits.memoryLimit, "memory_limit_from", limits.memorySource)
	ready.listening.Store(true)
	if admin == nil {
		admin = serveAdmin(lns.admin, adminHandler(reg, &ready, log, exemptEP.register), log)
		defer admin.shutdown(context.Background())
	}
	succ := startSuccession(cfg, lns, admin.ln, red, log) // handover.go: the previous agent stops; wait for the next
	succ.stopAdmin = func() { admin.shutdown(context.Background()) }
	defer succ.close()

	return serve(ctx, cfg.ShutdownTimeout, watched, proxy, serveErr, hup, &ready, succ, log)
}

// egressProxyCheck refuses rules with useEgressProxy when no egress proxy is
// given: at start (exit 1) and at every reload (the last good rules stay),
// since their requests could only get 502.
func egressProxyCheck(egressProxy *url.URL) func(*rules.Set) error {
	return func(s *rules.Set) error { return l7.CheckEgressProxy(s, egressProxy) }
}

// proxyConfig builds the l7 configuration from the flags (OriginalDst and
// Metrics are filled in later). control is run on every socket the proxy
// connects itself.
func proxyConfig(cfg *runConfig, reloader *rules.Reloader, mark uint32, control controlFunc, log *slog.Logger) (l7.Config, error) {
	dial, err := l7.ParseDialMode(cfg.Dial)
	if err != nil {
		return l7.Config{}, err
	}
	roots, err := loadRootCAs(cfg.CAFile)
	if err != nil {
		return l7.Config{}, err
	}
	pc := l7.Config{
		Rules:               reloader,
		Audit:               cfg.Mode == "audit",
		DialMode:            dial,
		Mark:                mark,
		Control:             control,
		RootCAs:             roots,
		EgressProxy:         cfg.EgressProxy,
		AllowUpstream:       cfg.AllowUpstream,
		Logger:              log,
		AccessLog:           cfg.accessLog,
		MaxHeaderBytes:      cfg.MaxHeaderBytes,
		MaxConnsPerClient:   cfg.MaxConnsPerClient,
		MaxStreamsPerClient: cfg.MaxStreamsPerClient,
		ReadHeaderTimeout:   cfg.ReadHeaderTimeout,
		IdleTimeout:         cfg.IdleTimeout,
		ConnectTimeout:      cfg.ConnectTimeout,
		ResponseTimeout:     cfg.ResponseTimeout,
		MaxIdleUpstream:     cfg.MaxIdleUpstream,
		MaxIdlePerClient:    cfg.MaxIdlePerClient,
		MaxSpliceLifetime:   cfg.MaxSpliceLifetime,
	}
	if cfg.DNS != "" {
		pc.Resolver = dnsResolver(cfg.DNS, mark, control)
	}
	return pc, nil
}

// controlFunc is a net.Dialer Control.
type controlFunc = func(network, address string, c syscall.RawConn) error

// ownSockets registers egressd's own sockets with the Redirector (once
// attached) so that the programs let them out: the agent may run inside a
// cgroup it redirects, as the DaemonSet does.
type ownSockets struct {
	red atomic.Pointer[redirect.Redirector]
}

func (o *ownSockets) control(network, address string, c syscall.RawConn) error {
	if r := o.red.Load(); r != nil {
		return r.Control(network, address, c)
	}
	return nil // not attached yet: nothing dials before
}

// loadRootCAs reads --ca-file: extra roots trusted for TLS origination
// (l7 keeps trusting the system roots too). nil when no file is given.
func loadRootCAs(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("ca file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca file %s: no PEM certificate in it", file)
	}
	return pool, nil
}

// dnsResolver resolves through the server at addr (host:port) only. Its
// sockets carry the mark (none for 0) and go through control (nil: none),
// which keeps them from being redirected when egressd runs inside an
// attached cgroup.
func dnsResolver(addr string, mark uint32, control controlFunc) *net.Resolver {
	// Setting SO_MARK takes CAP_NET_ADMIN, which the gateway may lack: mark 0
	// sets none.
	d := &net.Dialer{Control: l7.ChainControl(l7.MarkControl(mark), control)}
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}
}
