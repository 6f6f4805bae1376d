// Package upstream provides the "external services" that egressd's
// end-to-end tests and demo talk to: an HTTP handler that reports what it
// received, a throwaway CA with a server certificate, HTTP/1.1, h2c and TLS
// servers, and a DNS handler answering the test names.
//
// It is test and demo support, never linked into egressd itself.
//
// Lifecycle traps: servers started with Serve run until the returned
// *http.Server is closed; a listener made inside a network namespace keeps
// serving there, whatever goroutine serves it.
package upstream

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/egressd/egressd/internal/kerneltest"
)

// Recorder remembers the local address each request arrived on, and the
// peer address it came from. The zero value is ready to use.
type Recorder struct {
	mu    sync.Mutex
	seen  map[netip.Addr]int
	peers map[netip.Addr]int
}

func (r *Recorder) add(local, peer netip.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[netip.Addr]int{}
		r.peers = map[netip.Addr]int{}
	}
	r.seen[local.Unmap()]++
	r.peers[peer.Unmap()]++
}

// CountFrom returns how many requests came from the peer address addr.
func (r *Recorder) CountFrom(addr netip.Addr) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.peers[addr.Unmap()]
}

// Count returns how many requests arrived on addr.
func (r *Recorder) Count(addr netip.Addr) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[addr.Unmap()]
}

// Echo answers every request with what it received, one "key: value" line
// each (proto, host, path, local, tls, sni, body, peer), so that a client can
// assert on what the upstream really saw. /slow?ms=N waits N ms first. rec
// may be nil.
func Echo(rec *Recorder) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var la netip.AddrPort
		if local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			la, _ = netip.ParseAddrPort(local.String())
		}
		peer, _ := netip.ParseAddrPort(r.RemoteAddr)
		if rec != nil {
			rec.add(la.Addr(), peer.Addr())
		}
		if ms, err := strconv.Atoi(r.URL.Query().Get("ms")); err == nil && r.URL.Path == "/slow" {
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
		body, _ := io.ReadAll(r.Body)
		sni := ""
		if r.TLS != nil {
			sni = r.TLS.ServerName
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "proto: %s\nhost: %s\npath: %s\nlocal: %s\ntls: %t\nsni: %s\nbody: %d\npeer: %s\n",
			r.Proto, r.Host, r.URL.Path, la.Addr().Unmap(), r.TLS != nil, sni, len(body), peer.Addr().Unmap())
	})
}

// Serve serves h on ln in the background: HTTP/1.1, plus h2c when h2c is
// set, over TLS (with h2 by ALPN) when cert is not nil. Close the returned
// server to stop.
func Serve(ln net.Listener, h http.Handler, h2c bool, cert *tls.Certificate) *http.Server {
	// The bound covers the TLS handshake too: stretched on slow machines
	// (an emulated kernel-matrix guest took over 10 s for one).
	srv := &http.Server{Handler: h, ReadHeaderTimeout: kerneltest.Scale(10 * time.Second)}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	if h2c {
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	if cert != nil {
		srv.Protocols.SetHTTP2(true)
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*cert}, NextProtos: []string{"h2", "http/1.1"}})
	}
	go srv.Serve(ln)
	return srv
}
