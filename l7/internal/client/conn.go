package client

import (
	"bufio"
	"io"
	"net"
	"net/netip"
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

// Conn is one accepted client connection. The serving goroutine owns it;
// only its state, OnShutdown and the close methods are touched by others
// (Shutdown).
type Conn struct {
	NC     net.Conn
	BR     *bufio.Reader  // reads NC; holds the sniffed first bytes; nil while idle
	BW     *bufio.Writer  // writes NC (HTTP/1.x path); nil until used and while idle
	Client netip.AddrPort // remote address of NC
	Local  netip.AddrPort // local address of NC (the proxy port)
	Orig   netip.AddrPort // original destination (l7.Config.OriginalDst)
	Start  time.Time      // accept time
	// RDL, WDL: NC's read and write deadlines as the HTTP/1.x path set
	// them (l7/internal/body/deadline.go); only the serving goroutine
	// touches them.
	RDL, WDL body.Deadline
	// Gateway: accepted by l7.Proxy.ServeGateway, an explicit proxy with
	// no original destination. Cleared once an allowed CONNECT tunnel
	// turns out to carry HTTP/1.x or h2c (Tunnel then set): from there on
	// the connection is served like one redirected to the CONNECT port.
	Gateway bool
	// Tunnel: the gateway serves the requests inside a CONNECT tunnel;
	// OrigText is then the CONNECT target, for the access log.
	Tunnel   bool
	OrigText string
	// Linger: a request body was left unread; close with LingerClose.
	Linger bool
	// LimitKey: the client it is counted for (l7/internal/limit); zero:
	// none yet.
	LimitKey limit.Key
	// Scope: whose rules decide its requests (l7.Config.Scopes); zero:
	// the global ones.
	Scope Scope
	// Splice: what allowed the splice it is in (passthrough, tunnel, 101
	// upgrade), for l7.Proxy.Redecide; nil when none.
	Splice atomic.Pointer[Splice]
	// OnShutdown, when set by a protocol handler (h2c: send GOAWAY), is
	// called once by Shutdown instead of closing the connection while it is
	// active. It must not block.
	OnShutdown func()

	state atomic.Int32
	// ready waits for NC's bytes holding no buffer (first bytes, and idle
	// HTTP/1.x keep-alive connections); made on first use.
	ready *probe.Socket
	// up is the upstream connection of the HTTP/1.x exchange in flight, if
	// any: ForceClose closes it too, so that a request blocked on its
	// upstream does not hold Shutdown past its deadline.
	up        atomic.Pointer[net.Conn]
	closeOnce sync.Once
}

// New returns the Conn of a connection just accepted, active.
func New(nc net.Conn) *Conn {
	c := &Conn{NC: nc, Start: time.Now()}
	c.state.Store(stateActive)
	c.Client = addrPort(nc.RemoteAddr())
	c.Local = addrPort(nc.LocalAddr())
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

// SetIdle marks c idle (Shutdown may close it); it reports false when
// Shutdown is already under way and the caller must stop serving.
func (c *Conn) SetIdle() bool { return c.state.CompareAndSwap(stateActive, stateIdle) }

// SetActive marks c busy; false: Shutdown closed it meanwhile.
func (c *Conn) SetActive() bool { return c.state.CompareAndSwap(stateIdle, stateActive) }

// CloseIfIdle closes c if it is idle and idle is true; either way an h2c
// connection gets its OnShutdown (GOAWAY).
func (c *Conn) CloseIfIdle(idle bool) {
	if idle && c.state.CompareAndSwap(stateIdle, stateClosed) {
		c.Close()
		return
	}
	if f := c.OnShutdown; f != nil {
		c.closeOnce.Do(f)
	}
}

// ForceClose closes c and the upstream connection in use (SetUpstream).
func (c *Conn) ForceClose() {
	c.state.Store(stateClosed)
	c.Close()
	if up := c.up.Load(); up != nil {
		(*up).Close()
	}
}

// SetUpstream records *up (nil: none) as the upstream connection in use,
// for ForceClose; it is closed at once when ForceClose came first. up
// points into the upstream connection's own record, so that recording it
// costs no allocation per request.
func (c *Conn) SetUpstream(up *net.Conn) {
	c.up.Store(up)
	if up != nil && c.state.Load() == stateClosed {
		(*up).Close()
	}
}

// Close closes NC.
func (c *Conn) Close() { c.NC.Close() }

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}
)

// AwaitFirstBytes waits, holding no buffer, until c's first bytes arrive
// (at most timeout after accept: an idle connection is not kept longer
// than a slow head), then gives c its buffered reader. false: the
// connection ended, timed out or was closed by Shutdown. It leaves the
// read deadline of timeout after accept set.
func (c *Conn) AwaitFirstBytes(timeout time.Duration) bool {
	c.NC.SetReadDeadline(c.Start.Add(timeout))
	if !c.SetIdle() { // nothing received yet: Shutdown may close it
		return false
	}
	err := c.ReadySocket().Wait()
	if !c.SetActive() || err != nil {
		return false
	}
	c.TakeReader()
	return true
}

// ReadySocket is the probe that waits for NC's bytes, made on first use.
func (c *Conn) ReadySocket() *probe.Socket {
	if c.ready == nil {
		c.ready = probe.NewSocket(c.NC)
	}
	return c.ready
}

// TakeReader gives c a buffered reader from the pool (AwaitFirstBytes,
// and an HTTP/1.x connection's next request after an idle wait).
func (c *Conn) TakeReader() {
	c.BR = readerPool.Get().(*bufio.Reader)
	c.BR.Reset(c.NC)
}

// DropReader returns c's buffered reader, which holds nothing, to the pool.
func (c *Conn) DropReader() {
	c.BR.Reset(nil)
	readerPool.Put(c.BR)
	c.BR = nil
}

// TakeWriter gives c a buffered writer from the pool, if it has none.
func (c *Conn) TakeWriter() {
	if c.BW == nil {
		c.BW = writerPool.Get().(*bufio.Writer)
		c.BW.Reset(c.NC)
	}
}

// DropWriter returns c's buffered writer, which must hold nothing, to the
// pool.
func (c *Conn) DropWriter() {
	c.BW.Reset(nil)
	writerPool.Put(c.BW)
	c.BW = nil
}

// Release closes c and returns its buffers to the pools, at its end.
func (c *Conn) Release() {
	c.Close()
	if c.BR != nil {
		c.DropReader()
	}
	if c.BW != nil {
		c.DropWriter()
	}
}

// maxLinger and lingerFor bound what is read and dropped from a client
// whose request body was cut, before its connection is closed.
const (
	maxLinger = 1 << 20
	lingerFor = 500 * time.Millisecond
)

// LingerClose half-closes c and drops what it still sends for a while, so
// that its unread body does not make the kernel reset the connection
// before the client has read the response (net/http's server does the
// same after an early answer).
func (c *Conn) LingerClose() {
	if cw, ok := c.NC.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.NC.SetReadDeadline(time.Now().Add(lingerFor))
	io.CopyN(io.Discard, c.BR, maxLinger)
}
