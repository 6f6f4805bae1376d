package main

// flags.go: the command line of `egressd run` (runConfig, its FlagSet, its
// checks) and parseFlagSet, shared with gateway. The environment twins and
// the flag value types are package envflag, whose doc says why it is not
// github.com/peterbourgon/ff/v3 (it would split every flag's value at
// commas, skip empty variables and name the flag rather than the variable
// in its errors).

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/egressd/egressd/cmd/egressd/internal/envflag"
	"github.com/egressd/egressd/cmd/egressd/internal/limits"
	"github.com/egressd/egressd/redirect"
)

// runConfig is the parsed command line of `egressd run`.
type runConfig struct {
	Rules         string
	Cgroups       []string
	CgroupRules   []cgroupRules   // --cgroup-rules (scopes.go)
	ExemptCgroups []string        // --exempt-cgroup
	PodExempt     podExemptConfig // --exempt-namespace, --exempt-label-namespace, --system-namespace (exemptpods.go)
	ProxyPort     uint16
	Admin         string
	NodeAddrs     []netip.Addr
	ExcludeCIDRs  []netip.Prefix
	AllowUpstream []netip.Prefix
	EgressProxy   *url.URL
	CAFile        string
	DNS           string             // host:port of the resolver; "" for the system's
	Dial          string             // resolve | original
	Mode          string             // enforce | audit (l7 audit.go)
	LogFormat     string             // text | json
	AccessLog     string             // on ("" too) | off (accesslog.go)
	DNSServers    []netip.Prefix     // --dns-server; none given: resolv.conf's and --dns (dnsservers.go)
	AllowUDP      []redirect.UDPRule // --allow-udp
	SocketMark    uint32
	PinDir        string
	DenyUDP       bool // deprecated no-op: UDP is refused by default
	// Kubernetes (kube.go): EgressRules and this node's pods from the API.
	Kubernetes      bool
	Kubeconfig      string // "": in-cluster config
	NodeName        string
	GlobalNamespace string // "": the agent's own (kube.DefaultGlobalNamespace)
	Uninstall       bool

	ShutdownTimeout     time.Duration
	ConnectTimeout      time.Duration
	ReadHeaderTimeout   time.Duration
	IdleTimeout         time.Duration
	ResponseTimeout     time.Duration
	MaxHeaderBytes      int
	MaxConns            int           // 0: derived from RLIMIT_NOFILE (limits.AutoMaxConns)
	MaxConnsPerClient   int           // 0: the proxy's default
	MaxStreamsPerClient int           // 0: the proxy's default
	MemoryLimit         limits.Memory // the Go runtime's memory limit
	MaxIdleUpstream     int
	MaxIdlePerClient    int
	MaxSpliceLifetime   time.Duration // maxSpliceLifetimeFlag

	accessLog *slog.Logger // built from AccessLog by runCmd; nil: the main log
}

// Defaults of run's flags that cmd owns (the proxy's own limits default in l7).
const (
	defaultProxyPort       = 15001
	defaultAdmin           = "127.0.0.1:15090"
	defaultShutdownTimeout = 25 * time.Second // under Kubernetes' 30 s grace period
	// defaultSocketMark avoids the bits kube-proxy (0xc000) and Cilium
	// (0x0f00) use in the low 16 bits. The mark exempts nothing from
	// redirection; it is there for the node's routing rules.
	defaultSocketMark uint32 = 0x30e5
)

// runUsage heads egressd run -h.
const runUsage = "usage: egressd run --rules PATH --cgroup PATH... [flags]\n" +
	"       egressd run --uninstall [--pin-dir DIR]\n\n" +
	"Every flag can also be set by its environment twin, e.g. --proxy-port by\n" +
	"EGRESSD_PROXY_PORT (repeatable flags: a comma-separated list there).\n" +
	"A flag given on the command line wins over the environment.\n\nFlags:\n"

// newFlagSet returns a subcommand's FlagSet: errors and -h to out, the
// usage text then the flags' defaults.
func newFlagSet(name, usage string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() { fmt.Fprint(out, usage); fs.PrintDefaults() }
	return fs
}

// newRunFlags declares run's flags on a fresh FlagSet writing into cfg.
func newRunFlags(cfg *runConfig, out io.Writer) *flag.FlagSet {
	fs := newFlagSet("egressd run", runUsage, out)
	fs.StringVar(&cfg.Rules, "rules", "", "EgressRule `file or directory` (required)")
	fs.Var(envflag.List(&cfg.Cgroups, envflag.String), "cgroup",
		"cgroup v2 `directory` whose processes are redirected (repeatable; required)")
	fs.Var(envflag.List(&cfg.CgroupRules, parseCgroupRules), "cgroup-rules",
		"`CGROUP_DIR=RULES_PATH`: the processes of that cgroup (a --cgroup or below one) and of the cgroups below it are decided by these rule files on top of --rules; the most specific cgroup wins (repeatable)")
	fs.Var(envflag.List(&cfg.ExemptCgroups, envflag.String), "exempt-cgroup",
		"cgroup v2 `directory` below an attached one whose processes are left alone, as if not attached (repeatable; the agent's own cgroup is exempt where it holds only the agent)")
	exemptPodFlags(fs, &cfg.PodExempt)
	fs.Var(envflag.Port{Dst: &cfg.ProxyPort}, "proxy-port", "`port` the proxy listens on, IPv4 and IPv6")
	fs.StringVar(&cfg.Admin, "admin", defaultAdmin, "`address` of /metrics, /healthz, /readyz and /exempt (the exempt pods, with --kubernetes)")
	fs.Var(envflag.List(&cfg.NodeAddrs, netip.ParseAddr), "node-addr",
		"this node's `address` that pods' connections are sent to (repeatable: one IPv4, one IPv6); none: pods fail closed")
	fs.Var(envflag.List(&cfg.ExcludeCIDRs, netip.ParsePrefix), "exclude-cidr",
		"`CIDR` never redirected, e.g. the cluster's pod and service ranges (repeatable)")
	allowUpstreamFlag(fs, &cfg.AllowUpstream)
	fs.Var(envflag.URL{Dst: &cfg.EgressProxy}, "egress-proxy", "`URL` of the egress proxy for rules with useEgressProxy (http[s]://[user:pass@]host[:port])")
	fs.StringVar(&cfg.CAFile, "ca-file", "", "PEM `file` of extra root CAs for TLS origination")
	fs.StringVar(&cfg.DNS, "dns", "", "DNS server `host[:port]` to resolve upstream names with (default: the system's)")
	fs.StringVar(&cfg.Mode, "mode", "enforce", "`enforce`: requests no rule allows get 403; audit: they are forwarded and logged and counted as would-deny")
	fs.StringVar(&cfg.Dial, "dial", "resolve", "upstream address: `resolve` the matched host, or dial the original destination IP")
	fs.StringVar(&cfg.LogFormat, "log-format", "text", "log `format`: text or json")
	fs.Var(accessLogFlag{&cfg.AccessLog}, "access-log", accessLogUsage)
	fs.Var(envflag.List(&cfg.DNSServers, redirect.ParsePrefix), "dns-server",
		"`IP or CIDR` of a DNS server the cgroups may reach on port 53 (repeatable; default: the agent's resolv.conf nameservers and --dns)")
	fs.Var(envflag.List(&cfg.AllowUDP, redirect.ParseUDPRule), "allow-udp",
		"UDP destination the cgroups may send to: `PORT or CIDR:PORT` (repeatable; other UDP but DNS is refused, port 443 always)")
	fs.Var(envflag.Uint32{Dst: &cfg.SocketMark}, "socket-mark", "SO_MARK `mark` on egressd's own sockets (for routing rules; it exempts nothing from redirection)")
	fs.StringVar(&cfg.PinDir, "pin-dir", "", "bpffs `directory` of the pinned programs and maps (default <bpffs>/egressd)")
	fs.BoolVar(&cfg.DenyUDP, "deny-udp", false, "deprecated, no effect: UDP is refused by default (see --allow-udp)")
	fs.BoolVar(&cfg.Uninstall, "uninstall", false, "detach the programs, remove every pin, and exit")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", defaultShutdownTimeout, "on SIGTERM, how long requests in flight may take to finish")
	fs.DurationVar(&cfg.ConnectTimeout, "connect-timeout", 0, "upstream connect plus TLS handshake (0: proxy default, 5s)")
	fs.DurationVar(&cfg.ReadHeaderTimeout, "read-header-timeout", 0, "time to read a request head (0: proxy default, 10s)")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", 0, "keep-alive wait for a client's next request, and the longest silence inside a request or response body, e.g. a long poll (0: proxy default, 2m)")
	fs.DurationVar(&cfg.ResponseTimeout, "response-timeout", 0, "wait for an upstream response head once the request is sent; not a limit inside the body (0: proxy default, 1m)")
	fs.IntVar(&cfg.MaxHeaderBytes, "max-header-bytes", 0, "request/response head size limit (0: proxy default, 32 KiB)")
	fs.IntVar(&cfg.MaxConns, "max-conns", 0, "client connections open at once, all clients; more are reset at accept (0: 16384, lowered to fit the open files limit; -1: none)")
	fs.IntVar(&cfg.MaxConnsPerClient, "max-conns-per-client", 0, "client connections open at once from one source address (a pod); more are reset at accept (0: 1024; -1: none)")
	fs.IntVar(&cfg.MaxStreamsPerClient, "max-streams-per-client", 0, "h2c streams open at once from one client (a pod), over all its connections; more are answered 503 (0: 1024; -1: none)")
	fs.Var(&cfg.MemoryLimit, "memory-limit", "the Go runtime's memory `limit`: auto (85% of the cgroup's, unless GOMEMLIMIT is set), none, or a size (400MiB); new connections are shed above 90% of it")
	fs.IntVar(&cfg.MaxIdleUpstream, "max-idle-upstream", 0, "idle upstream HTTP/1.x connections kept in all (0: proxy default, 1024)")
	fs.IntVar(&cfg.MaxIdlePerClient, "max-idle-upstream-per-client", 0,
		"idle upstream HTTP/1.x connections one client address may leave pooled, whatever hosts it names (0: proxy default, 128)")
	maxSpliceLifetimeFlag(fs, &cfg.MaxSpliceLifetime)
	fs.BoolVar(&cfg.Kubernetes, "kubernetes", false,
		"watch the EgressRules of all namespaces and the pods of this node through the Kubernetes API: a pod's requests are decided by the global rules and its namespace's (in-cluster config unless --kubeconfig)")
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "kubeconfig `file` for --kubernetes (default: the in-cluster config)")
	fs.StringVar(&cfg.NodeName, "node-name", "", "this node's `name` (required with --kubernetes; the DaemonSet sets it from spec.nodeName)")
	fs.StringVar(&cfg.GlobalNamespace, "global-namespace", "",
		"`namespace` whose EgressRules apply to every pod, with --rules (default: the agent's own, from its service account, else $EGRESSD_POD_NAMESPACE, else egressd)")
	return fs
}

// maxSpliceLifetimeFlag declares --max-splice-lifetime, shared by run and
// gateway. Off by default: websockets, gRPC-over-TLS streams and other
// long connections legitimately last hours and many clients do not
// reconnect; a rule's removal already closes what it allowed.
func maxSpliceLifetimeFlag(fs *flag.FlagSet, dst *time.Duration) {
	fs.DurationVar(dst, "max-splice-lifetime", 0,
		"close a spliced connection (TLS passthrough, CONNECT tunnel, 101 upgrade) this long after it began, e.g. 24h, to bound how long one decision and its DNS answer are used (0: never — long streams and websockets are legitimate, and a rule's removal closes what it allowed anyway)")
}

// allowUpstreamFlag declares --allow-upstream, shared by run and gateway.
func allowUpstreamFlag(fs *flag.FlagSet, dst *[]netip.Prefix) {
	fs.Var(envflag.List(dst, envflag.ParseCIDR), "allow-upstream",
		"`CIDR` egressd may dial although it is loopback, link-local, multicast, unspecified or this node's own address (repeatable; default: none)")
}

// parseRunFlags parses args, then fills every flag not given on the command
// line from its environment twin (looked up with getenv). A bad value in
// either place is a usage error.
func parseRunFlags(args []string, getenv func(string) (string, bool), out io.Writer) (*runConfig, error) {
	cfg := &runConfig{ProxyPort: defaultProxyPort, SocketMark: defaultSocketMark}
	if err := parseFlagSet(newRunFlags(cfg, out), args, getenv, cfg.validate); err != nil {
		return nil, err
	}
	return cfg, nil
}

// parseFlagSet parses args into fs (no positional arguments), then the
// environment twins of the flags not given, then checks the result with
// validate. Errors are usage errors (exit 2); -h is exit 0.
func parseFlagSet(fs *flag.FlagSet, args []string, getenv func(string) (string, bool), validate func() error) error {
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if err := envflag.Apply(fs, getenv); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if err := validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

// parseArgs parses args into fs, as every subcommand does: -h is exit 0
// (the usage printed), a bad flag exit 2 (the flag package has printed the
// error and the usage).
func parseArgs(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitError{exitOK}
		}
		return exitError{exitUsage}
	}
	return nil
}

func (c *runConfig) validate() error {
	if c.Uninstall {
		return nil
	}
	if c.Rules == "" {
		return errors.New("--rules is required")
	}
	if err := c.PodExempt.check(c.Kubernetes); err != nil {
		return err
	}
	if c.Kubernetes && c.NodeName == "" {
		return errors.New("--node-name is required with --kubernetes: the pods of this node are watched (the DaemonSet sets EGRESSD_NODE_NAME from spec.nodeName)")
	}
	if c.Kubernetes && len(c.CgroupRules) > 0 {
		return errors.New("--cgroup-rules and --kubernetes: choose one (pods get their namespace's rules with --kubernetes)")
	}
	if !c.Kubernetes && c.Kubeconfig != "" {
		return errors.New("--kubeconfig needs --kubernetes")
	}
	if c.Mode != "" && c.Mode != "enforce" && c.Mode != "audit" {
		return fmt.Errorf("--mode %q: want enforce or audit", c.Mode)
	}
	if c.Dial != "resolve" && c.Dial != "original" {
		return fmt.Errorf("--dial %q: want resolve or original", c.Dial)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("--log-format %q: want text or json", c.LogFormat)
	}
	var v4, v6 int
	for _, a := range c.NodeAddrs {
		if a.Is4() || a.Is4In6() {
			v4++
		} else {
			v6++
		}
	}
	if v4 > 1 || v6 > 1 {
		return fmt.Errorf("--node-addr %v: at most one IPv4 and one IPv6 address", c.NodeAddrs)
	}
	if _, _, err := net.SplitHostPort(c.Admin); err != nil {
		return fmt.Errorf("--admin %q: %v", c.Admin, err)
	}
	if c.DNS != "" {
		c.DNS = withDefaultPort(c.DNS, "53")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"shutdown-timeout", c.ShutdownTimeout}, {"connect-timeout", c.ConnectTimeout},
		{"read-header-timeout", c.ReadHeaderTimeout}, {"idle-timeout", c.IdleTimeout},
		{"response-timeout", c.ResponseTimeout}, {"max-splice-lifetime", c.MaxSpliceLifetime}} {
		if d.v < 0 {
			return fmt.Errorf("--%s %v: must not be negative", d.name, d.v)
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"max-header-bytes", c.MaxHeaderBytes}, {"max-idle-upstream", c.MaxIdleUpstream},
		{"max-idle-upstream-per-client", c.MaxIdlePerClient}} {
		if n.v < 0 {
			return fmt.Errorf("--%s %d: must not be negative", n.name, n.v)
		}
	}
	for _, l := range []struct {
		name string
		v    int
	}{{"max-conns", c.MaxConns}, {"max-conns-per-client", c.MaxConnsPerClient}, {"max-streams-per-client", c.MaxStreamsPerClient}} {
		if l.v < -1 {
			return fmt.Errorf("--%s %d: want a count, 0 for the default or -1 for none", l.name, l.v)
		}
	}
	return nil
}

// withDefaultPort adds port to an address given without one ("10.0.0.10",
// "fd00::10", "[fd00::10]").
func withDefaultPort(addr, port string) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	return net.JoinHostPort(strings.Trim(addr, "[]"), port)
}
