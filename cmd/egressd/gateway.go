package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/egressd/egressd/cmd/egressd/internal/envflag"
	"github.com/egressd/egressd/l7"
)

// gatewayConfig is the parsed command line of `egressd gateway`.
type gatewayConfig struct {
	Rules           string
	Listen          string
	Admin           string
	CAFile          string
	DNS             string
	LogFormat       string
	AccessLog       string // on ("" too) | off (accesslog.go)
	TLSCert, TLSKey string // serve the proxy over TLS; both or neither
	SocketMark      uint32
	AllowUpstream   []netip.Prefix
	ShutdownTimeout time.Duration
	// MaxSpliceLifetime: --max-splice-lifetime (maxSpliceLifetimeFlag).
	MaxSpliceLifetime time.Duration

	accessLog *slog.Logger // built from AccessLog by gatewayCmd; nil: the main log
}

// Defaults of gateway's flags: its own ports, so that a gateway and an
// agent can share a node.
const (
	defaultGatewayListen = ":15080"
	defaultGatewayAdmin  = "127.0.0.1:15091"
)

// gatewayUsage heads egressd gateway -h.
const gatewayUsage = "usage: egressd gateway --rules PATH [flags]\n\n" +
	"Runs egressd as the dedicated egress proxy: an explicit HTTP proxy that\n" +
	"accepts CONNECT host:port and absolute-form requests, only for what the\n" +
	"rules allow, and refuses everything else with 403. Agents reach it with\n" +
	"egressd run --egress-proxy http://GATEWAY:15080.\n\n" +
	"Every flag can also be set by its environment twin, e.g. --listen by\n" +
	"EGRESSD_LISTEN. A flag given on the command line wins.\n\nFlags:\n"

// newGatewayFlags declares gateway's flags on a fresh FlagSet writing into cfg.
func newGatewayFlags(cfg *gatewayConfig, out io.Writer) *flag.FlagSet {
	fs := newFlagSet("egressd gateway", gatewayUsage, out)
	fs.StringVar(&cfg.Rules, "rules", "", "EgressRule `file or directory` (required)")
	fs.StringVar(&cfg.Listen, "listen", defaultGatewayListen, "`address` the proxy listens on")
	fs.StringVar(&cfg.Admin, "admin", defaultGatewayAdmin, "`address` of /metrics, /healthz and /readyz")
	fs.StringVar(&cfg.CAFile, "ca-file", "", "PEM `file` of extra root CAs for TLS origination")
	fs.StringVar(&cfg.DNS, "dns", "", "DNS server `host[:port]` to resolve upstream names with (default: the system's)")
	fs.StringVar(&cfg.LogFormat, "log-format", "text", "log `format`: text or json")
	fs.Var(accessLogFlag{&cfg.AccessLog}, "access-log", accessLogUsage)
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "PEM `file` of the certificate (chain) to serve the proxy over TLS, with --tls-key; agents then use --egress-proxy https://…")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "PEM `file` of the private key of --tls-cert")
	fs.Var(envflag.Uint32{Dst: &cfg.SocketMark}, "socket-mark", "SO_MARK on upstream sockets, for the node's routing rules; 0: none (it exempts nothing from redirection: on a node with an agent the gateway's pods are exempted by label, README \"Exempt pods\")")
	allowUpstreamFlag(fs, &cfg.AllowUpstream)
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", defaultShutdownTimeout, "on SIGTERM, how long requests and tunnels in flight may take to finish")
	maxSpliceLifetimeFlag(fs, &cfg.MaxSpliceLifetime)
	return fs
}

// parseGatewayFlags parses args, then the environment twins (getenv) of
// the flags not given (flags.go).
func parseGatewayFlags(args []string, getenv func(string) (string, bool), out io.Writer) (*gatewayConfig, error) {
	cfg := &gatewayConfig{}
	if err := parseFlagSet(newGatewayFlags(cfg, out), args, getenv, cfg.validate); err != nil {
		return nil, err
	}
	return cfg, nil
}

func (c *gatewayConfig) validate() error {
	if c.Rules == "" {
		return errors.New("--rules is required")
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("--log-format %q: want text or json", c.LogFormat)
	}
	for name, addr := range map[string]string{"listen": c.Listen, "admin": c.Admin} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("--%s %q: %v", name, addr, err)
		}
	}
	if c.DNS != "" {
		c.DNS = withDefaultPort(c.DNS, "53")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	for name, d := range map[string]time.Duration{"shutdown-timeout": c.ShutdownTimeout, "max-splice-lifetime": c.MaxSpliceLifetime} {
		if d < 0 {
			return fmt.Errorf("--%s %v: must not be negative", name, d)
		}
	}
	return nil
}

// gatewayCmd is `egressd gateway`: the dedicated egress proxy.
func gatewayCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseGatewayFlags(args, os.LookupEnv, stderr)
	if err != nil {
		return err
	}
	access := newAccessLog(cfg.AccessLog, cfg.LogFormat, stderr)
	defer access.close() // the lines still waiting, once the proxy has stopped
	cfg.accessLog = access.logger
	log := newLogger(cfg.LogFormat, stderr)
	routeStdLog(log) // serve.go
	return runGateway(ctx, cfg, log)
}

// runGateway loads the rules, serves the admin endpoints and the explicit
// proxy until ctx ends (SIGTERM/SIGINT), reloading the rules on change and
// SIGHUP, then drains.
func runGateway(ctx context.Context, cfg *gatewayConfig, log *slog.Logger) error {
	var hook reloadHook
	reloader, hup, stopHUP, err := loadRules(cfg.Rules, log, nil, &hook) // serve.go
	if err != nil {
		return err
	}
	defer stopHUP()
	roots, err := loadRootCAs(cfg.CAFile)
	if err != nil {
		return err
	}
	reg := newRegistry(func() []ruleSetStats { return []ruleSetStats{reloaderStats("", reloader)} })
	pc := l7.Config{Rules: reloader, Mark: cfg.SocketMark, RootCAs: roots, AllowUpstream: cfg.AllowUpstream, Logger: log, AccessLog: cfg.accessLog, Metrics: reg,
		MaxSpliceLifetime: cfg.MaxSpliceLifetime}
	if cfg.DNS != "" {
		pc.Resolver = dnsResolver(cfg.DNS, cfg.SocketMark, nil)
	}
	proxy, err := l7.New(pc)
	if err != nil {
		return err
	}
	hook.proxy.Store(proxy)

	var ready readiness
	ready.attached(func() error { return nil }) // nothing to attach: the gateway is reached explicitly
	admin, err := startAdmin(cfg.Admin, adminHandler(reg, &ready, log), log)
	if err != nil {
		return err
	}
	defer admin.shutdown(context.Background())
	ln, err := listenGateway(cfg)
	if err != nil {
		return err
	}
	defer ln.Close()
	serveErr := make(chan error, 1)
	go func() { serveErr <- proxy.ServeGateway(ln) }()
	ready.listening.Store(true)
	log.Info("egressd gateway running", "listen", ln.Addr().String(), "admin", admin.addr.String(),
		"rules", reloader.Current().Len())
	return serve(ctx, cfg.ShutdownTimeout, reloader, proxy, serveErr, hup, &ready, nil, log)
}

// listenGateway listens on --listen, behind TLS with --tls-cert/--tls-key
// (read once, at start).
func listenGateway(cfg *gatewayConfig) (net.Listener, error) {
	var tc *tls.Config
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("gateway: tls: %w", err)
		}
		tc = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	return ln, nil
}
