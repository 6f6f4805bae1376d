package l7

import (
	"bufio"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/egressd/egressd/l7/internal/body"
	"github.com/egressd/egressd/l7/internal/limit"
	"github.com/egressd/egressd/l7/internal/probe"
)

// Connection states, for Shutdown.
const (
	stateActive int32 = iota // reading or serving a request: left alone by Shutdown
	stateIdle                // waiting for the next request: Shutdown may close it
	stateClosed              // closed by Shutdown
)

// clientConn is one accepted client connection. The serving goroutine owns
// it; only the state, onShutdown and the close methods are touched by others.
type clientConn struct {
	nc     net.Conn
	br     *bufio.Reader  // reads nc; holds the sniffed first bytes
	bw     *bufio.Writer  // writes nc (HTTP/1.x path); nil until used
	client netip.AddrPort // remote address of nc
	local  netip.AddrPort // local address of nc (the proxy port)
	orig   netip.AddrPort // original destination, from Config.OriginalDst
	start  time.Time      // accept time
	// rdl, wdl: nc's read and write deadlines as the HTTP/1.x path set
	// them (deadline.go); only the serving goroutine touches them.
	rdl, wdl body.Deadline
	// gateway: accepted by ServeGateway (gateway.go), an explicit proxy
	// with no original destination. Cleared once an allowed CONNECT tunnel
	// turns out to carry HTTP/1.x or h2c (tunnel then set): from there on
	// the connection is served like one redirected to the CONNECT port.
	gateway bool
	// tunnel: the gateway serves the requests inside a CONNECT tunnel
	// (gateway.go); origText is then the CONNECT target, for the access log.
	tunnel   bool
	origText string
	// ready waits for nc's bytes holding no buffer (first bytes, and idle
	// HTTP/1.x keep-alive connections); made on first use.
	ready *probe.Socket
	// linger: a request body was left unread; close with lingerClose.
	linger bool
	// limitKey: the client it is counted for (limit.go); zero: none yet.
	limitKey limit.Key
	// scope: whose rules decide its requests (Config.Scopes); zero: the
	// global ones.
	scope Scope

	state atomic.Int32
	// splice: what allowed the splice c is in (passthrough, tunnel, 101
	// upgrade), for Redecide (redecide.go); nil when none.
	splice atomic.Pointer[splice]
	// up is the upstream connection of the HTTP/1.x exchange in flight, if
	// any: forceClose closes it too, so that a request blocked on its
	// upstream does not hold Shutdown past its deadline.
	up atomic.Pointer[upConn]
	// onShutdown, when set by a protocol handler (h2c: send GOAWAY), is
	// called once by Shutdown instead of closing the connection while it is
	// active. It must not block.
	onShutdown func()
	closeOnce  sync.Once
}

func newClientConn(nc net.Conn) *clientConn {
	c := &clientConn{nc: nc, start: time.Now()}
	c.state.Store(stateActive)
	c.client = addrPort(nc.RemoteAddr())
	c.local = addrPort(nc.LocalAddr())
	return c
}

// addrPort converts a net.Addr to a netip.AddrPort, unmapping IPv4-in-IPv6.
func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// setIdle marks c idle (Shutdown may close it); it reports false when
// Shutdown is already under way and the caller must stop serving.
func (c *clientConn) setIdle() bool { return c.state.CompareAndSwap(stateActive, stateIdle) }

// setActive marks c busy; false: Shutdown closed it meanwhile.
func (c *clientConn) setActive() bool { return c.state.CompareAndSwap(stateIdle, stateActive) }

// closeIfIdle closes c if it is idle and idle is true; either way an h2c
// connection gets its onShutdown (GOAWAY).
func (c *clientConn) closeIfIdle(idle bool) {
	if idle && c.state.CompareAndSwap(stateIdle, stateClosed) {
		c.close()
		return
	}
	if f := c.onShutdown; f != nil {
		c.closeOnce.Do(f)
	}
}

func (c *clientConn) forceClose() {
	c.state.Store(stateClosed)
	c.close()
	if uc := c.up.Load(); uc != nil {
		uc.nc.Close()
	}
}

// setUpstream records uc (nil: none) as the upstream connection in use, for
// forceClose; uc is closed at once when forceClose came first.
func (c *clientConn) setUpstream(uc *upConn) {
	c.up.Store(uc)
	if uc != nil && c.state.Load() == stateClosed {
		uc.nc.Close()
	}
}

func (c *clientConn) close() { c.nc.Close() }

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}
var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}

// h2Preface is the HTTP/2 client connection preface (prior knowledge, h2c).
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// serveConn runs one accepted connection to its end.
func (p *Proxy) serveConn(c *clientConn) {
	defer func() { p.limits.Release(c.limitKey) }()
	defer p.trackConn(c, false)
	defer func() {
		if r := recover(); r != nil {
			p.log.Error("panic serving connection", "client", c.client, "orig", c.orig, "panic", r, "stack", string(debug.Stack()))
		}
		c.close()
		if c.br != nil {
			c.dropReader()
		}
		if c.bw != nil {
			c.bw.Reset(nil)
			writerPool.Put(c.bw)
		}
	}()
	if c.gateway {
		p.serveGateway(c)
		return
	}
	orig, cgroup, ok := p.lookup(c)
	if !ok {
		p.metrics.OrigMisses.Inc()
		p.log.Warn("no original destination: closing", "client", c.client, "local", c.local)
		return
	}
	if c.limitKey == (limit.Key{}) && !p.admitCgroup(c, cgroup) {
		return
	}
	c.orig = orig
	if p.cfg.Scopes != nil {
		c.scope = p.cfg.Scopes.Scope(cgroup)
	}
	switch p.sniff(c) {
	case protoH2C:
		p.serveH2C(c)
	case protoTLS:
		p.serveTLSPassthrough(c)
	case protoHTTP1:
		p.serveHTTP1(c)
	}
}

type sniffed int

const (
	protoNone sniffed = iota
	protoHTTP1
	protoH2C
	protoTLS
)

// awaitFirstBytes waits, holding no buffer, until c's first bytes arrive
// (at most ReadHeaderTimeout after accept: an idle connection is not kept
// longer than a slow head), then gives c its buffered reader. false: the
// connection ended, timed out or was closed by Shutdown. It leaves the
// deadline of ReadHeaderTimeout after accept set.
func (p *Proxy) awaitFirstBytes(c *clientConn) bool {
	c.nc.SetReadDeadline(c.start.Add(p.cfg.ReadHeaderTimeout))
	if !c.setIdle() { // nothing received yet: Shutdown may close it
		return false
	}
	err := c.readySocket().Wait()
	if !c.setActive() || err != nil {
		return false
	}
	c.takeReader()
	return true
}

// readySocket is c.ready, made on first use.
func (c *clientConn) readySocket() *probe.Socket {
	if c.ready == nil {
		c.ready = probe.NewSocket(c.nc)
	}
	return c.ready
}

// takeReader gives c a buffered reader from the pool (awaitFirstBytes,
// and an HTTP/1.x connection's next request after an idle wait).
func (c *clientConn) takeReader() {
	c.br = readerPool.Get().(*bufio.Reader)
	c.br.Reset(c.nc)
}

// dropReader returns c's buffered reader, which holds nothing, to the pool.
func (c *clientConn) dropReader() {
	c.br.Reset(nil)
	readerPool.Put(c.br)
	c.br = nil
}

// sniff waits for the first bytes (awaitFirstBytes) and classifies them
// (sniffReader).
func (p *Proxy) sniff(c *clientConn) sniffed {
	defer c.nc.SetReadDeadline(time.Time{})
	if !p.awaitFirstBytes(c) {
		return protoNone
	}
	return sniffReader(c.br)
}

// sniffReader reads br's first bytes, waiting for them under the connection's
// read deadline, and classifies them without consuming any: a TLS
// handshake record, the h2c preface, or else HTTP/1.x; protoNone when
// nothing came.
func sniffReader(br *bufio.Reader) sniffed {
	b, err := br.Peek(1)
	if err != nil {
		return protoNone
	}
	switch b[0] {
	case 0x16:
		return protoTLS
	case 'P':
	default:
		return protoHTTP1
	}
	// Compare byte by byte as they arrive: a short "PUT" request must not
	// wait for 24 bytes that never come.
	for n := 1; n <= len(h2Preface); n++ {
		b, err := br.Peek(n)
		if err != nil {
			return protoHTTP1 // let the HTTP/1 reader report what is there
		}
		if string(b) != h2Preface[:n] {
			return protoHTTP1
		}
	}
	return protoH2C
}
