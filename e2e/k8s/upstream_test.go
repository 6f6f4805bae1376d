//go:build k8s

package k8s

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"sync"
	"testing"

	"github.com/vishvananda/netns"
)

// hit is one request that reached the upstream.
type hit struct {
	Host string
	From netip.Addr
}

// upstream is the "external" HTTP server: in the cluster's external network
// namespace, on port 80 of its address, answering 200 "upstream <host>" and
// recording every request and its source address.
type upstream struct {
	mu   sync.Mutex
	hits []hit
}

func startUpstream(t *testing.T, nsName, addr string) *upstream {
	t.Helper()
	ln, err := listenIn(nsName, net.JoinHostPort(addr, "80"))
	if err != nil {
		t.Fatalf("upstream: %v", err)
	}
	u := &upstream{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ap, _ := netip.ParseAddrPort(r.RemoteAddr)
		u.mu.Lock()
		u.hits = append(u.hits, hit{Host: r.Host, From: ap.Addr()})
		u.mu.Unlock()
		fmt.Fprintf(w, "upstream %s\n", r.Host)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return u
}

// snapshot returns the requests so far.
func (u *upstream) snapshot() []hit {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]hit(nil), u.hits...)
}

// listenIn listens on addr inside the named network namespace: the socket
// keeps the namespace it was made in.
func listenIn(nsName, addr string) (net.Listener, error) {
	type result struct {
		ln  net.Listener
		err error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread dies with the goroutine if restoring fails
		orig, err := netns.Get()
		if err != nil {
			res <- result{err: err}
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(nsName)
		if err != nil {
			res <- result{err: fmt.Errorf("netns %s: %w", nsName, err)}
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			res <- result{err: fmt.Errorf("enter netns %s: %w", nsName, err)}
			return
		}
		ln, lerr := net.Listen("tcp", addr)
		if err := netns.Set(orig); err != nil {
			res <- result{ln: ln, err: fmt.Errorf("restore netns: %w", err)}
			return
		}
		runtime.UnlockOSThread()
		res <- result{ln: ln, err: lerr}
	}()
	r := <-res
	return r.ln, r.err
}
