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
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// upstreamBody is the fixed 100-byte response body, as in the reference runs.
var upstreamBody = []byte(strings.Repeat("egressbench upstream payload ", 4)[:99] + "\n")

// upstreamCmd serves upstreamBody over HTTP/1.1 and h2c (prior knowledge) on
// each --http address and over TLS (h2 and http/1.1) on --https, and gRPC's
// health service on --grpc, inside the network namespace --netns; also
// GET /bulk/SIZE and POST or PUT /sink for the bulk tests. It prints "ready" once every socket listens and
// runs until ctx ends.
func upstreamCmd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("upstream", flag.ContinueOnError)
	nsPath := fs.String("netns", "", "network namespace `path` to listen in (default: current)")
	httpAddrs := fs.String("http", "", "comma-separated plain HTTP/1.1 + h2c listen `addresses`")
	httpsAddr := fs.String("https", "", "TLS listen `address`")
	grpcAddr := fs.String("grpc", "", "gRPC (h2c, the standard health service) listen `address`")
	certFile := fs.String("cert", "", "TLS certificate `file`")
	keyFile := fs.String("key", "", "TLS key `file`")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	plain, secure, err := listenIn(*nsPath, append(splitList(*httpAddrs), splitList(*grpcAddr)...), *httpsAddr)
	if err != nil {
		return err
	}
	var grpcLn net.Listener
	if *grpcAddr != "" {
		plain, grpcLn = plain[:len(plain)-1], plain[len(plain)-1]
	}
	small := func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		hdr["Content-Type"] = []string{"text/plain"}
		hdr["Content-Length"] = []string{"100"}
		w.Write(upstreamBody)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", small)
	mux.HandleFunc("GET /bulk/{size}", serveBulk)
	mux.HandleFunc("/sink", serveSink)
	h := http.Handler(mux)
	errc := make(chan error, len(plain)+2)
	if grpcLn != nil {
		gs := grpc.NewServer()
		healthpb.RegisterHealthServer(gs, health.NewServer())
		go func() { errc <- gs.Serve(grpcLn) }()
		defer gs.Stop()
	}
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

// bulkChunk is what serveBulk writes at a time (one chunk when chunked).
var bulkChunk = make([]byte, 1<<20)

// serveBulk answers GET /bulk/SIZE with SIZE bytes, with Content-Length, or
// chunked (1 MiB chunks) with ?chunked.
func serveBulk(w http.ResponseWriter, r *http.Request) {
	size, err := strconv.ParseInt(r.PathValue("size"), 10, 64)
	if err != nil || size < 0 {
		http.Error(w, "bad size", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if !r.URL.Query().Has("chunked") {
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	}
	for size > 0 {
		n := min(size, int64(len(bulkChunk)))
		if _, err := w.Write(bulkChunk[:n]); err != nil {
			return
		}
		size -= n
	}
}

// serveSink reads the request body (in 1 MiB reads) and answers how many
// bytes it got.
func serveSink(w http.ResponseWriter, r *http.Request) {
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, err := r.Body.Read(buf)
		n += int64(k)
		if err == io.EOF {
			break
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprintf(w, "%d\n", n)
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
