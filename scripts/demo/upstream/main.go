// Command upstream is the "external" side of scripts/demo.sh: run inside the
// demo's network namespace, it serves on one address plain HTTP (port 80),
// h2c (8080) and HTTPS with a CA it makes at start (443) — each answering
// with what it received — and DNS (53) resolving every name under .test to
// that address. It writes the CA certificate to -ca once all listeners are
// bound, so the demo can wait for that file. It stops on SIGTERM/SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/egressd/egressd/internal/upstream"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "upstream: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	addrFlag := flag.String("addr", "198.18.0.10", "`address` to serve on")
	caFile := flag.String("ca", "", "write the CA certificate (PEM) to this `file` when ready (required)")
	flag.Parse()
	addr, err := netip.ParseAddr(*addrFlag)
	if err != nil || *caFile == "" {
		flag.Usage()
		os.Exit(2)
	}
	ca, err := upstream.NewCA("*.test", "tls.whitelisted.test")
	if err != nil {
		return err
	}
	listen := func(port string) (net.Listener, error) {
		return net.Listen("tcp", net.JoinHostPort(addr.String(), port))
	}
	var lns [4]net.Listener
	for i, port := range []string{"80", "8080", "443", "53"} {
		if lns[i], err = listen(port); err != nil {
			return err
		}
	}
	pc, err := net.ListenPacket("udp", net.JoinHostPort(addr.String(), "53"))
	if err != nil {
		return err
	}
	echo := upstream.Echo(nil)
	upstream.Serve(lns[0], echo, false, nil)
	upstream.Serve(lns[1], echo, true, nil)
	upstream.Serve(lns[2], echo, false, &ca.Cert)
	stop := upstream.ServeDNS(pc, lns[3], upstream.DNS{V4: addr})
	defer stop()
	if err := os.WriteFile(*caFile, ca.PEM, 0o644); err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	<-ctx.Done()
	return nil
}
