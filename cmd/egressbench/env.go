package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/egressd/egressd/cmd/egressbench/internal/report"
)

// target is one case, ready to receive load.
type target struct {
	name   string
	addr   string // where the load generator connects
	h2     string // where h2c load goes ("": the case has no h2c path)
	grpc   string // where gRPC load goes ("": none)
	cgroup int    // cgroup fd the load generator starts in; -1: the harness's own
	proxy  *server
	tests  map[string]bool // nil: every test except h2c
}

// env is everything one "run" set up; Close tears it down in reverse.
type env struct {
	o        *options
	stderr   io.Writer
	dir      string
	topo     *topology
	dnsAddr  string
	closers  []func()
	targets  []*target
	skipped  map[string]string // case -> why it could not run
	machine  report.Machine
	upstream *server
	failed   bool // a run failed: keep the run directory's logs
}

func (e *env) onClose(f func()) { e.closers = append(e.closers, f) }

// Close stops every process and removes everything, newest first.
func (e *env) Close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
	if e.topo != nil {
		if err := e.topo.Close(); err != nil {
			fmt.Fprintf(e.stderr, "egressbench: cleanup: %v\n", err)
		}
	}
	switch {
	case e.dir == "":
	case e.o.keep || e.failed:
		fmt.Fprintf(e.stderr, "egressbench: run directory (configs, logs) kept: %s\n", e.dir)
	default:
		os.RemoveAll(e.dir)
	}
}

// setup builds the topology, starts the upstream and every requested case.
// A case that cannot start is skipped with its reason (reported), unless it
// is "direct".
func setup(ctx context.Context, o *options, stderr io.Writer) (*env, error) {
	e := &env{o: o, stderr: stderr, skipped: map[string]string{}}
	var err error
	if e.dir, err = os.MkdirTemp("", "egressbench-"); err != nil {
		return e, err
	}
	if e.topo, err = newTopology(); err != nil {
		return e, err
	}
	if err := writeCerts(e.dir); err != nil {
		return e, fmt.Errorf("certificates: %w", err)
	}
	var stopDNS func()
	if e.dnsAddr, stopDNS, err = startDNS(); err != nil {
		return e, err
	}
	e.onClose(stopDNS)
	if err := e.startUpstream(ctx); err != nil {
		return e, err
	}
	e.machine = report.ReadMachine(o.egressd, o.egressdB)
	for _, name := range o.cases {
		t, err := e.startCase(ctx, name)
		if err == nil {
			err = e.check(ctx, t)
		}
		if err != nil {
			if name == "direct" {
				return e, err
			}
			fmt.Fprintf(stderr, "egressbench: case %s skipped: %v\n", name, err)
			e.skipped[name] = err.Error()
			continue
		}
		e.targets = append(e.targets, t)
	}
	return e, nil
}

// The upstream's h2c and gRPC ports, and nginx's HTTP/2 (prior knowledge)
// listener in front of them.
const (
	h2Port   = "8080"
	grpcPort = "9090"
	nginxH2  = "127.0.0.1:18083"
)

var (
	upstreamH2   = net.JoinHostPort(upstreamIP, h2Port)
	upstreamGRPC = net.JoinHostPort(upstreamIP, grpcPort)
)

func (e *env) startUpstream(ctx context.Context) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "upstream", "--netns", e.topo.nsPath,
		"--http", net.JoinHostPort(upstreamIP, "80")+","+net.JoinHostPort(upstreamIP, "8080"),
		"--https", net.JoinHostPort(upstreamIP, "443"),
		"--grpc", net.JoinHostPort(upstreamIP, grpcPort),
		"--cert", filepath.Join(e.dir, "cert.pem"), "--key", filepath.Join(e.dir, "key.pem"))
	cmd.Stderr = logFile(e.dir, "upstream.log")
	s, err := startServer(ctx, "upstream", cmd, net.JoinHostPort(upstreamIP, "80"))
	if err != nil {
		return err
	}
	e.upstream = s
	e.onClose(s.stop)
	return nil
}

// startCase starts the proxy of one case (none for direct).
func (e *env) startCase(ctx context.Context, name string) (*target, error) {
	upstream := net.JoinHostPort(upstreamIP, "80")
	switch name {
	case "direct":
		return &target{name: name, addr: upstream, cgroup: -1, h2: upstreamH2, grpc: upstreamGRPC,
			tests: nil}, nil
	case "nginx":
		t, err := e.startPeer(ctx, name, "127.0.0.1:18081", "nginx.conf",
			"nginx", "-p", e.dir, "-e", filepath.Join(e.dir, "nginx-error.log"),
			"-c", filepath.Join(e.dir, "nginx.conf"), "-g", "daemon off;")
		if t != nil { // listen … http2 (h2c prior knowledge) with grpc_pass
			t.h2, t.grpc = nginxH2, nginxH2
		}
		return t, err
	case "haproxy":
		return e.startPeer(ctx, name, "127.0.0.1:18082", "haproxy.cfg",
			"haproxy", "-db", "-f", filepath.Join(e.dir, "haproxy.cfg"))
	case "egressd":
		return e.startEgressd(ctx, name, 10, 15301, 15401, upstream)
	case "egressd-b": // ports of issue 20's range
		return e.startEgressd(ctx, name, 10, 23600, 23601, upstream)
	case "egressd-https":
		return e.startEgressd(ctx, name, 10, 15302, 15402, net.JoinHostPort(upstreamIP, "443"))
	case "egressd-100k":
		return e.startEgressd(ctx, name, e.o.bigRules, 15303, 15403, upstream)
	}
	return nil, fmt.Errorf("unknown case %q", name)
}

// startPeer renders a peer's config template into the run directory and
// starts the peer in the foreground.
func (e *env) startPeer(ctx context.Context, name, listen, conf string, argv ...string) (*target, error) {
	tmpl, err := os.ReadFile(filepath.Join(e.o.peerDir, conf))
	if err != nil {
		return nil, fmt.Errorf("config template: %w", err)
	}
	cfg := strings.NewReplacer("__RUNDIR__", e.dir, "__LISTEN_H2__", nginxH2, "__LISTEN__", listen,
		"__UPSTREAM_H2__", upstreamH2, "__UPSTREAM_GRPC__", upstreamGRPC,
		"__UPSTREAM__", net.JoinHostPort(upstreamIP, "80")).Replace(string(tmpl))
	if err := os.WriteFile(filepath.Join(e.dir, conf), []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	if _, err := exec.LookPath(argv[0]); err != nil {
		return nil, fmt.Errorf("%s is not installed (apt-get install %s): %w", argv[0], argv[0], err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = logFile(e.dir, name+".out")
	cmd.Stderr = cmd.Stdout
	s, err := startServer(ctx, name, cmd, listen)
	if err != nil {
		return nil, err
	}
	e.onClose(s.stop)
	return &target{name: name, addr: listen, cgroup: -1, proxy: s}, nil
}

// logFile opens name in dir for a child's output (nil on error: discarded).
func logFile(dir, name string) *os.File {
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return nil
	}
	return f
}

// check makes sure the case forwards whitelisted hosts (200) and refuses
// the others (403) before any load is measured.
func (e *env) check(ctx context.Context, t *target) error {
	got, err := runCheck(ctx, t)
	if err != nil {
		return err
	}
	want := map[string]int{loadHost: 200, exactHost: 200, "evil.example.test": 403, "allowed.test.evil.test": 403}
	if t.name == "direct" {
		want = map[string]int{loadHost: 200}
	}
	var bad []string
	for host, code := range want {
		if got[host] != code {
			bad = append(bad, fmt.Sprintf("%s: got %d, want %d", host, got[host], code))
		}
	}
	if len(bad) > 0 {
		return errors.New("whitelist check: " + strings.Join(bad, "; "))
	}
	return nil
}
