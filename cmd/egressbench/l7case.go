package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/egressd/egressd/l7"
	"github.com/egressd/egressd/rules"
)

// l7Cmd runs egressd's proxy (package l7) without BPF: every accepted
// connection is taken to be redirected from --orig. It is the "egressd-l7"
// case — egressd's user-space cost alone — and the process that --profile
// profiles, since it can write CPU and allocation profiles on exit.
func l7Cmd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("l7", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:15309", "listen `address`")
	rulesPath := fs.String("rules", "", "rules `file`")
	orig := fs.String("orig", "", "original destination `ip:port` of every connection")
	dnsAddr := fs.String("dns", "", "DNS server `address` (default: the system's)")
	caFile := fs.String("ca-file", "", "extra root `CA`s for TLS origination")
	logFile := fs.String("log", "", "JSON log `file`, access log included, as egressd run writes it (default: discarded)")
	cpuProf := fs.String("cpuprofile", "", "write a CPU profile to `file` on exit")
	memProf := fs.String("memprofile", "", "write an allocation profile to `file` on exit")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	set, _, err := rules.Load(*rulesPath)
	if err != nil {
		return err
	}
	od, err := netip.ParseAddrPort(*orig)
	if err != nil {
		return fmt.Errorf("--orig: %w", err)
	}
	cfg := l7.Config{Rules: staticRules{set}, OriginalDst: fixedDst(od), Resolver: resolverFor(*dnsAddr)}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return err
		}
		cfg.RootCAs = x509.NewCertPool()
		cfg.RootCAs.AppendCertsFromPEM(pem)
	}
	if *logFile != "" {
		f, err := os.Create(*logFile)
		if err != nil {
			return err
		}
		defer f.Close()
		cfg.Logger = slog.New(slog.NewJSONHandler(f, nil))
		al := l7.NewAccessLog(f, l7.AccessLogOptions{JSON: true}) // batched, as egressd run writes it
		defer al.Close()                                          // before f.Close
		cfg.AccessLog = slog.New(al)
	}
	p, err := l7.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	if *cpuProf != "" {
		f, err := os.Create(*cpuProf)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if *memProf != "" {
		runtime.MemProfileRate = 64 << 10 // sample more often than the default 512 KiB
		defer writeAllocProfile(*memProf)
	}
	errc := make(chan error, 1)
	go func() { errc <- p.Serve(ln) }()
	fmt.Fprintln(stdout, "ready")
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Shutdown(sctx); err != nil && !errors.Is(err, l7.ErrProxyClosed) {
		return err
	}
	return nil
}

func writeAllocProfile(path string) {
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	pprof.Lookup("allocs").WriteTo(f, 0)
}

type staticRules struct{ s *rules.Set }

func (r staticRules) Current() *rules.Set { return r.s }

// fixedDst answers every lookup with one address.
type fixedDst netip.AddrPort

func (d fixedDst) Lookup(_, _ netip.AddrPort) (netip.AddrPort, bool) { return netip.AddrPort(d), true }

// resolverFor returns a resolver that asks only addr ("" : the system's).
func resolverFor(addr string) *net.Resolver {
	if addr == "" {
		return nil
	}
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
}
