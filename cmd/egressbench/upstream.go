package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

// upstreamBody is the fixed 100-byte response body, as in the reference runs.
var upstreamBody = []byte(strings.Repeat("egressbench upstream payload ", 4)[:99] + "\n")

// upstreamCmd serves upstreamBody over HTTP/1.1 and h2c (prior knowledge) on
// each --http address and over TLS (h2 and http/1.1) on --https, inside the
// network namespace --netns. It prints "ready" once every socket listens and
// runs until ctx ends.
func upstreamCmd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("upstream", flag.ContinueOnError)
	nsPath := fs.String("netns", "", "network namespace `path` to listen in (default: current)")
	httpAddrs := fs.String("http", "", "comma-separated plain HTTP/1.1 + h2c listen `addresses`")
	httpsAddr := fs.String("https", "", "TLS listen `address`")
	certFile := fs.String("cert", "", "TLS certificate `file`")
	keyFile := fs.String("key", "", "TLS key `file`")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	plain, secure, err := listenIn(*nsPath, splitList(*httpAddrs), *httpsAddr)
	if err != nil {
		return err
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		hdr["Content-Type"] = []string{"text/plain"}
		hdr["Content-Length"] = []string{"100"}
		w.Write(upstreamBody)
	})
	errc := make(chan error, len(plain)+1)
	var servers []*http.Server
	for _, ln := range plain {
		s := &http.Server{Handler: h2c.NewHandler(h, &http2.Server{}), IdleTimeout: 2 * time.Minute}
		servers = append(servers, s)
		go func() { errc <- s.Serve(ln) }()
	}
	if secure != nil {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			return fmt.Errorf("load upstream certificate: %w", err)
		}
		s := &http.Server{Handler: h, IdleTimeout: 2 * time.Minute,
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
		servers = append(servers, s)
		go func() { errc <- s.ServeTLS(secure, "", "") }()
	}
	fmt.Fprintln(stdout, "ready")
	select {
	case <-ctx.Done():
	case err := <-errc:
		return fmt.Errorf("upstream: %w", err)
	}
	for _, s := range servers {
		s.Close()
	}
	return nil
}

// listenIn opens the plain and TLS listeners ("" gives nil) in the namespace
// at nsPath. Sockets keep the namespace they were created in, so only the
// calling thread switches; it stays locked (and in the namespace) for good,
// which is harmless in this single-purpose process.
func listenIn(nsPath string, plain []string, secure string) ([]net.Listener, net.Listener, error) {
	if len(plain) == 0 && secure == "" {
		return nil, nil, errors.New("upstream: no listen address")
	}
	if nsPath != "" {
		runtime.LockOSThread()
		ns, err := netns.GetFromPath(nsPath)
		if err != nil {
			return nil, nil, fmt.Errorf("open netns %s: %w", nsPath, err)
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			return nil, nil, fmt.Errorf("enter netns %s: %w", nsPath, err)
		}
	}
	var lns []net.Listener
	for _, addr := range plain {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("upstream: %w", err)
		}
		lns = append(lns, ln)
	}
	var tl net.Listener
	if secure != "" {
		var err error
		if tl, err = net.Listen("tcp", secure); err != nil {
			return nil, nil, fmt.Errorf("upstream: %w", err)
		}
	}
	return lns, tl, nil
}
