package l7

import (
	"bufio"
	"net"
	"net/netip"
	"sync"
	"time"
)

// poolKey identifies interchangeable upstream connections.
type poolKey struct {
	tls    bool       // TLS originated (HTTPS port)
	h2     bool       // speaks HTTP/2 (helper H's transports)
	proxy  bool       // goes through the egress proxy
	host   string     // lower-case host the request was matched with (SNI for TLS)
	port   uint16     // original destination port
	target netip.Addr // DialOriginal: the original IP; DialResolve: zero (resolved at dial)
}

// upConn is a pooled upstream HTTP/1.1 connection.
type upConn struct {
	nc        net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	key       poolKey
	idleSince time.Time
	reused    bool         // taken from the pool (it may have been closed by the peer)
	via       *egressProxy // plain HTTP to the egress proxy (absolute form); nil: to the upstream
	rdl, wdl  deadline     // nc's read and write deadlines (deadline.go)
}

// upstreamPool keeps idle upstream connections, newest first out.
type upstreamPool struct {
	maxPerKey int
	maxIdle   time.Duration
	mu        sync.Mutex
	idle      map[poolKey][]*upConn
	closed    bool
	lastSweep time.Time
}

func newUpstreamPool(maxPerKey int, maxIdle time.Duration) *upstreamPool {
	return &upstreamPool{maxPerKey: maxPerKey, maxIdle: maxIdle, idle: make(map[poolKey][]*upConn)}
}

// get returns an idle connection for k, or nil; now is the current time
// (to the microsecond: it only ages idle connections).
func (u *upstreamPool) get(k poolKey, now time.Time) *upConn {
	u.mu.Lock()
	defer u.mu.Unlock()
	l := u.idle[k]
	// Drop the stale ones, oldest first.
	i := 0
	for i < len(l) && now.Sub(l[i].idleSince) > u.maxIdle {
		l[i].nc.Close()
		l[i] = nil
		i++
	}
	l = l[i:]
	if len(l) == 0 {
		delete(u.idle, k)
		return nil
	}
	uc := l[len(l)-1]
	l[len(l)-1] = nil
	u.idle[k] = l[:len(l)-1]
	uc.reused = true
	return uc
}

// put returns uc to the pool, or closes it when the pool is full or closed;
// now is the current time.
func (u *upstreamPool) put(uc *upConn, now time.Time) {
	uc.idleSince = now
	u.mu.Lock()
	l := u.idle[uc.key]
	if u.closed || len(l) >= u.maxPerKey {
		u.mu.Unlock()
		uc.nc.Close()
		return
	}
	u.idle[uc.key] = append(l, uc)
	if uc.idleSince.Sub(u.lastSweep) > u.maxIdle {
		u.sweep(uc.idleSince)
	}
	u.mu.Unlock()
}

// sweep closes the connections idle for longer than maxIdle under every key,
// so that hosts asked for once do not keep sockets open until Shutdown. It
// runs at most once per maxIdle, from put; u.mu is held.
func (u *upstreamPool) sweep(now time.Time) {
	u.lastSweep = now
	for k, l := range u.idle {
		i := 0
		for i < len(l) && now.Sub(l[i].idleSince) > u.maxIdle {
			l[i].nc.Close()
			l[i] = nil
			i++
		}
		if i == len(l) {
			delete(u.idle, k)
		} else if i > 0 {
			u.idle[k] = append(l[:0:0], l[i:]...)
		}
	}
}

// closeAll closes every idle connection and makes put close from now on.
func (u *upstreamPool) closeAll() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closed = true
	for k, l := range u.idle {
		for _, uc := range l {
			uc.nc.Close()
		}
		delete(u.idle, k)
	}
}
