package l7

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/metric/metrictest"
	"github.com/egressd/egressd/l7/internal/limit"
)

// waitOpen waits until the proxy counts n open client connections.
func (e *env) waitOpen(n int) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for e.gauge("egressd_open_connections") != float64(n) {
		if time.Now().After(deadline) {
			e.t.Fatalf("open connections %v, want %d", e.gauge("egressd_open_connections"), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// limit reads egressd_limit{limit=name}.
func (e *env) limit(name string) float64 {
	e.t.Helper()
	mfs, err := metrictest.Gather(e.reg)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == "egressd_limit" && m.GetLabel()[0].GetValue() == name {
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

// wantShed: the proxy resets a connection from src at once, without
// answering (on loopback the reset may already fail the connect).
func (e *env) wantShed(src string) {
	e.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", e.addr)
	if err != nil {
		if !errors.Is(err, syscall.ECONNRESET) {
			e.t.Fatalf("dial: %v", err)
		}
		return
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		e.t.Fatalf("connection over the limit not closed: read %v", err)
	}
}

// get sends one request on rc and wants 200.
func wantServed(t *testing.T, rc *rawClient) {
	t.Helper()
	rc.send("GET / HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
	if resp, _ := rc.read("GET"); resp.StatusCode != 200 {
		t.Fatalf("got %d, want 200", resp.StatusCode)
	}
}

func limitEnv(t *testing.T, cfg Config) (*env, *upstream) {
	t.Helper()
	u := newUpstream(t, nil)
	cfg.Rules = compileRules(t, httpRule("wild", "*.allowed.test", u.port))
	cfg.OriginalDst = fixedOrig{u.orig()}
	return newEnv(t, cfg), u
}

// TestShedOverThePerClientLimit: a client at its limit gets its next
// connection reset at once, unread, while another client is still served;
// once one of its connections ends it is admitted again.
func TestShedOverThePerClientLimit(t *testing.T) {
	e, u := limitEnv(t, Config{MaxConnsPerClient: 2})
	a1, a2 := e.dialFrom("127.0.0.1"), e.dialFrom("127.0.0.1")
	e.waitOpen(2)
	e.wantShed("127.0.0.1")
	wantServed(t, e.dialFrom("127.0.0.2")) // another client
	wantServed(t, a1)
	u.next(t)
	u.next(t)
	u.none(t) // the shed request never went out
	if n := e.counter("egressd_connections_shed_total", "reason", "max_conns_per_client"); n != 1 {
		t.Errorf("shed max_conns_per_client = %v, want 1", n)
	}
	mustContain(t, e.logs.String(), `"reason":"max_conns_per_client"`)
	a2.c.Close()
	e.waitOpen(2) // a1 and the other client's
	wantServed(t, e.dialFrom("127.0.0.1"))
	if v := e.limit("max_conns_per_client"); v != 2 {
		t.Errorf("egressd_limit{max_conns_per_client} = %v", v)
	}
}

func TestShedOverTheGlobalLimit(t *testing.T) {
	e, _ := limitEnv(t, Config{MaxConns: 2})
	e.dialFrom("127.0.0.1")
	e.dialFrom("127.0.0.2")
	e.waitOpen(2)
	e.wantShed("127.0.0.3")
	if n := e.counter("egressd_connections_shed_total", "reason", "max_conns"); n != 1 {
		t.Errorf("shed max_conns = %v, want 1", n)
	}
	if v := e.limit("max_conns"); v != 2 {
		t.Errorf("egressd_limit{max_conns} = %v", v)
	}
}

// TestShedUnderMemoryPressure: with the process over the runtime's
// memory limit, a client holding limit.PressureAllowance connections has its
// next one shed, while a client with few is still served; under the
// limit again, the first is served too.
func TestShedUnderMemoryPressure(t *testing.T) {
	e, _ := limitEnv(t, Config{})
	for range limit.PressureAllowance {
		e.dialFrom("127.0.0.1")
	}
	e.waitOpen(limit.PressureAllowance)
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	debug.SetMemoryLimit(1 << 20) // far below what the test process uses
	time.Sleep(2 * limit.MemoryCheckEvery)
	e.wantShed("127.0.0.1")
	if n := e.counter("egressd_connections_shed_total", "reason", "memory"); n != 1 {
		t.Errorf("shed memory = %v, want 1", n)
	}
	wantServed(t, e.dialFrom("127.0.0.2"))
	if v, want := e.limit("memory_shed_bytes"), 0.9*(1<<20); v < want-1 || v > want {
		t.Errorf("egressd_limit{memory_shed_bytes} = %v", v)
	}
	debug.SetMemoryLimit(old)
	time.Sleep(2 * limit.MemoryCheckEvery)
	wantServed(t, e.dialFrom("127.0.0.1"))
}

// TestShedLogIsRateLimited: a flood of shed connections writes one line.
func TestShedLogIsRateLimited(t *testing.T) {
	e, _ := limitEnv(t, Config{MaxConnsPerClient: 1})
	e.dialFrom("127.0.0.1")
	e.waitOpen(1)
	for range 20 {
		e.wantShed("127.0.0.1")
	}
	if n := strings.Count(e.logs.String(), "shedding new connections"); n != 1 {
		t.Errorf("%d shed log lines for 20 shed connections, want 1", n)
	}
	if n := e.counter("egressd_connections_shed_total", "reason", "max_conns_per_client"); n != 20 {
		t.Errorf("shed = %v, want 20", n)
	}
}

// failingListener fails its first Accepts with errs, then accepts.
type failingListener struct {
	net.Listener
	errs  []error
	calls atomic.Int32
}

func (l *failingListener) Accept() (net.Conn, error) {
	if i := int(l.calls.Add(1)) - 1; i < len(l.errs) {
		return nil, l.errs[i]
	}
	return l.Listener.Accept()
}

// TestAcceptResourceErrorsAreTemporary: the kernel out of file structures,
// buffers or memory at accept does not end Serve (the agent would exit and
// every pod fail closed); Serve pauses and accepts again.
func TestAcceptResourceErrorsAreTemporary(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.EMFILE} {
		if !temporaryAcceptError(&net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}) {
			t.Errorf("%v: not temporary", errno)
		}
	}
	if temporaryAcceptError(net.ErrClosed) {
		t.Error("a closed listener is temporary")
	}
	u := newUpstream(t, nil)
	e := &env{t: t, dials: make(chan string, 1)}
	p, err := New(Config{Rules: compileRules(t, httpRule("wild", "*.allowed.test", u.port)), OriginalDst: fixedOrig{u.orig()}, Dial: e.localDial, AllowUpstream: testLoopback})
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.p, e.addr = p, inner.Addr().String()
	ln := &failingListener{Listener: inner}
	for _, errno := range []syscall.Errno{syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM} {
		ln.errs = append(ln.errs, &net.OpError{Op: "accept", Net: "tcp", Addr: inner.Addr(), Err: os.NewSyscallError("accept4", errno)})
	}
	served := make(chan error, 1)
	go func() { served <- p.Serve(ln) }()
	wantServed(t, e.dial())
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v", err)
	default:
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
	if err := <-served; !errors.Is(err, ErrProxyClosed) {
		t.Errorf("Serve = %v", err)
	}
}

// TestIdleConnectionIsClosedReadHeaderTimeoutAfterAccept: a connection
// that sends nothing is closed after ReadHeaderTimeout, not IdleTimeout.
func TestIdleConnectionIsClosedReadHeaderTimeoutAfterAccept(t *testing.T) {
	for _, gateway := range []bool{false, true} {
		cfg := Config{ReadHeaderTimeout: 100 * time.Millisecond, IdleTimeout: time.Minute}
		e, _ := limitEnv(t, cfg)
		if gateway {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go e.p.ServeGateway(ln) // returns at the env's Shutdown
			e.addr = ln.Addr().String()
		}
		if rc := e.dial(); !rc.closed() { // waits 5 s
			t.Errorf("gateway %v: silent connection left open past ReadHeaderTimeout", gateway)
		}
	}
}

// TestFirstHeadDeadlineCountsFromAccept: a first byte sent late does not
// restart the header timeout: the head must be complete ReadHeaderTimeout
// after accept.
func TestFirstHeadDeadlineCountsFromAccept(t *testing.T) {
	const rht = 2 * time.Second
	e, u := limitEnv(t, Config{ReadHeaderTimeout: rht, IdleTimeout: time.Minute})
	rc := e.dial()
	accepted := time.Now()
	time.Sleep(rht * 3 / 4)
	rc.send("G")
	stop := make(chan struct{})
	defer close(stop)
	go func() { // trickle: the head never ends
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				rc.c.Write([]byte("X"))
			}
		}
	}()
	resp, _ := rc.read("GET")
	if resp.StatusCode != 408 {
		t.Fatalf("got %d, want 408", resp.StatusCode)
	}
	// From accept: rht (+1/16); from the first byte it would be 1.75 rht.
	if took := time.Since(accepted); took > rht*3/2 {
		t.Errorf("408 after %v: the header deadline started at the first byte, not at accept (%v)", took, rht)
	}
	u.none(t)
}

// TestIdleConnectionHoldsNoBuffer: connections that sent nothing cost no
// read buffer (a few KiB each in all, not the 4 KiB reader and more).
func TestIdleConnectionHoldsNoBuffer(t *testing.T) {
	const n = 400
	e, _ := limitEnv(t, Config{})
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	e.waitOpen(n)
	time.Sleep(50 * time.Millisecond) // every serving goroutine is parked waiting
	after := heap()
	for _, c := range conns {
		c.Close()
	}
	// Client and server sides are both in this process's heap.
	per := (int64(after) - int64(before)) / n
	t.Logf("heap per idle connection (both ends): %d bytes", per)
	if per > 3<<10 {
		t.Errorf("an idle connection costs %d bytes of heap, want under 3 KiB (no read buffer)", per)
	}
}

// cgroupOrig is an OriginalDstCgroup: every connection goes to dst, from
// the cgroup its source address is mapped to.
type cgroupOrig struct {
	dst     netip.AddrPort
	cgroups map[netip.Addr]uint64
}

func (o cgroupOrig) Lookup(client, local netip.AddrPort) (netip.AddrPort, bool) { return o.dst, true }

func (o cgroupOrig) LookupCgroup(client, local netip.AddrPort) (netip.AddrPort, uint64, bool) {
	return o.dst, o.cgroups[client.Addr()], true
}

// TestHostProcessesCountedPerCgroup: connections from loopback (host
// processes) count for the connecting cgroup, not the address they share.
func TestHostProcessesCountedPerCgroup(t *testing.T) {
	u := newUpstream(t, nil)
	a := netip.MustParseAddr
	e := newEnv(t, Config{
		Rules:             compileRules(t, httpRule("wild", "*.allowed.test", u.port)),
		OriginalDst:       cgroupOrig{u.orig(), map[netip.Addr]uint64{a("127.0.0.1"): 7, a("127.0.0.2"): 7, a("127.0.0.3"): 8}},
		MaxConnsPerClient: 2,
	})
	c1, c2 := e.dialFrom("127.0.0.1"), e.dialFrom("127.0.0.2") // cgroup 7 twice
	wantServed(t, c1)
	wantServed(t, c2)
	e.wantShed("127.0.0.1") // its address has one connection, its cgroup two
	wantServed(t, e.dialFrom("127.0.0.3"))
	wantServed(t, e.dialFrom("127.0.0.4")) // no cgroup known: its address
	if n := e.counter("egressd_connections_shed_total", "reason", "max_conns_per_client"); n != 1 {
		t.Errorf("shed max_conns_per_client = %v, want 1", n)
	}
	c1.c.Close()
	e.waitOpen(3)
	wantServed(t, e.dialFrom("127.0.0.1"))
}

// TestKeepAliveIdleHoldsNoReadBuffer: a keep-alive connection waiting for
// its next request holds no read buffer either: it goes back to the pool
// once the response is out (4 KiB each; with 1,000 idle connections, 4 MiB).
func TestKeepAliveIdleHoldsNoReadBuffer(t *testing.T) {
	const n = 300
	e, u := limitEnv(t, Config{})
	wantServed(t, e.dial()) // the upstream connection and the pools, before counting
	u.next(t)
	mem := func(gc bool) (heap, stack int64) {
		if gc {
			runtime.GC()
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc), int64(ms.StackInuse)
	}
	_, stackBefore := mem(false) // before a GC shrinks the test's own stacks, which would grow back below
	before, _ := mem(true)
	conns := make([]*rawClient, 0, n)
	for range n {
		rc := e.dial()
		wantServed(t, rc)
		u.next(t)
		rc.br = nil // the client's reader is this test's, not the proxy's
		conns = append(conns, rc)
	}
	// Each server goroutine drops its reader once its response is out,
	// which the client may have read before, and hands its wait to a
	// goroutine with a small stack (l7/internal/http1's shedAfter): wait
	// for both, within a bound. Measured: 2.4-2.5 KiB of heap (both ends:
	// sockets, the connection's record and what it keeps while parked;
	// 3.9-4.1 KiB when it kept its h1conn, ~1 KiB with head buffers and
	// caches; ~8 KiB when each held its 4 KiB reader) and 3.3-3.7 KiB of
	// goroutine stack (5.5-5.8 KiB when the serving goroutine waited on the
	// stack its request grew, 12 KiB before the GCs of this test shrink
	// some of them).
	const heapLimit, stackLimit = 3 << 10, 4608
	var per, stackPer int64
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, stack := mem(false)
		heap, _ := mem(true)
		per, stackPer = (heap-before)/n, (stack-stackBefore)/n
		if per < heapLimit && stackPer < stackLimit || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("per idle keep-alive connection (both ends): heap %d bytes, goroutine stacks %d bytes", per, stackPer)
	if per >= heapLimit {
		t.Errorf("an idle keep-alive connection costs %d bytes of heap, want under %d (no read buffer, no h1conn)", per, heapLimit)
	}
	if stackPer >= stackLimit {
		t.Errorf("an idle keep-alive connection holds %d bytes of goroutine stack, want under %d (its wait on a new goroutine)", stackPer, stackLimit)
	}
	for _, rc := range conns {
		rc.c.Close()
	}
}

// TestIdleKeepAliveHandOff: an idle keep-alive connection waits for its
// next request on a new goroutine (l7/internal/http1's shedAfter). That
// goroutine must then read what came: the next request is answered, and a
// client that closes its idle connection ends it at once (open connections
// back to 0, without Shutdown's help). A wait that handed the connection on
// again without reading would leave both unanswered, spinning.
func TestIdleKeepAliveHandOff(t *testing.T) {
	e, u := limitEnv(t, Config{})
	rc := e.dial()
	for i := range 3 { // the second and third requests come after a wait handed off
		wantServed(t, rc)
		u.next(t)
		if i == 0 {
			e.waitOpen(1)
		}
	}
	g := runtime.NumGoroutine()
	rc.c.Close()
	e.waitOpen(0)
	if n := runtime.NumGoroutine(); n > g {
		t.Errorf("%d goroutines after the client left, %d before", n, g)
	}
}
