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
	proxy  bool       // goes through the egress proxy
	host   string     // rules.CanonicalHost of the request (SNI for TLS)
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
	reused    bool          // taken from the pool (it may have been closed by the peer)
	via       *egressProxy  // plain HTTP to the egress proxy (absolute form); nil: to the upstream
	rdl, wdl  deadline      // nc's read and write deadlines (deadline.go)
	peeker    *socketPeeker // probe.go: the reuse check; nil until the first reuse

	// While idle: the client that returned it (its share of the pool) and
	// its places in the pool's three lists (listKey, listAll, listClient).
	owner netip.Addr
	links [3]struct{ prev, next *upConn }
}

// The lists an idle connection is on.
const (
	listKey    = iota // the connections of its poolKey; the newest is reused first
	listAll           // every idle connection, oldest first: expiry and the total bound
	listClient        // the idle connections its owner returned: the per-client bound
)

// idleList is a doubly linked list of idle connections through their
// links[which].
type idleList struct {
	head, tail *upConn
	n          int
}

func (l *idleList) pushBack(uc *upConn, which int) {
	uc.links[which].prev, uc.links[which].next = l.tail, nil
	if l.tail != nil {
		l.tail.links[which].next = uc
	} else {
		l.head = uc
	}
	l.tail = uc
	l.n++
}

func (l *idleList) remove(uc *upConn, which int) {
	lk := &uc.links[which]
	if lk.prev != nil {
		lk.prev.links[which].next = lk.next
	} else {
		l.head = lk.next
	}
	if lk.next != nil {
		lk.next.links[which].prev = lk.prev
	} else {
		l.tail = lk.prev
	}
	lk.prev, lk.next = nil, nil
	l.n--
}

// upstreamPool keeps idle upstream connections: at most maxPerKey per key,
// maxPerClient returned by one client address (so that one client naming
// thousands of hosts cannot make the node hold a socket to each) and
// maxTotal in all; over a bound, the oldest idle connection concerned is
// closed. A connection idle for longer than maxIdle is closed.
type upstreamPool struct {
	maxPerKey, maxPerClient, maxTotal int
	maxIdle                           time.Duration

	mu        sync.Mutex
	byKey     map[poolKey]idleList // by value: an emptied key costs no allocation when it returns
	byClient  map[netip.Addr]idleList
	all       idleList
	closed    bool
	lastSweep time.Time
}

func newUpstreamPool(maxPerKey, maxPerClient, maxTotal int, maxIdle time.Duration) *upstreamPool {
	return &upstreamPool{maxPerKey: maxPerKey, maxPerClient: maxPerClient, maxTotal: maxTotal, maxIdle: maxIdle,
		byKey: make(map[poolKey]idleList), byClient: make(map[netip.Addr]idleList)}
}

// get takes the newest idle connection for k, or nil; now is the current
// time (to the microsecond: it only ages idle connections). The caller
// checks it (probe.go) before use.
func (u *upstreamPool) get(k poolKey, now time.Time) *upConn {
	u.mu.Lock()
	defer u.mu.Unlock()
	uc := u.byKey[k].tail
	if uc == nil {
		return nil
	}
	if now.Sub(uc.idleSince) > u.maxIdle { // the newest is stale: so are the others
		u.expire(now)
		return nil
	}
	u.unlink(uc)
	uc.reused = true
	return uc
}

// unlink takes uc off every list; u.mu is held.
func (u *upstreamPool) unlink(uc *upConn) {
	l := u.byKey[uc.key]
	if l.remove(uc, listKey); l.n == 0 {
		delete(u.byKey, uc.key)
	} else {
		u.byKey[uc.key] = l
	}
	c := u.byClient[uc.owner]
	if c.remove(uc, listClient); c.n == 0 {
		delete(u.byClient, uc.owner)
	} else {
		u.byClient[uc.owner] = c
	}
	u.all.remove(uc, listAll)
}

// put returns uc, last used by client, to the pool (or closes it when the
// pool is closed); now is the current time.
func (u *upstreamPool) put(uc *upConn, client netip.Addr, now time.Time) {
	uc.idleSince, uc.owner = now, client
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		uc.nc.Close()
		return
	}
	// Over a bound, the oldest connection concerned goes first.
	if l := u.byKey[uc.key]; l.n >= u.maxPerKey {
		u.evict(l.head)
	}
	if c := u.byClient[client]; c.n >= u.maxPerClient {
		u.evict(c.head)
	}
	if u.all.n >= u.maxTotal {
		u.evict(u.all.head)
	}
	l := u.byKey[uc.key]
	l.pushBack(uc, listKey)
	u.byKey[uc.key] = l
	c := u.byClient[client]
	c.pushBack(uc, listClient)
	u.byClient[client] = c
	u.all.pushBack(uc, listAll)
	if now.Sub(u.lastSweep) > u.maxIdle {
		u.lastSweep = now
		u.expire(now)
	}
	u.mu.Unlock()
}

// evict closes the idle connection uc; u.mu is held.
func (u *upstreamPool) evict(uc *upConn) {
	u.unlink(uc)
	uc.nc.Close()
}

// expire closes the connections idle for longer than maxIdle, so that hosts
// asked for once do not keep sockets open until Shutdown. put runs it at
// most once per maxIdle; u.mu is held.
func (u *upstreamPool) expire(now time.Time) {
	for uc := u.all.head; uc != nil && now.Sub(uc.idleSince) > u.maxIdle; uc = u.all.head {
		u.evict(uc)
	}
}

// idle returns the number of idle connections.
func (u *upstreamPool) idle() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.all.n
}

// closeAll closes every idle connection and makes put close from now on.
func (u *upstreamPool) closeAll() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closed = true
	for uc := u.all.head; uc != nil; uc = u.all.head {
		u.evict(uc)
	}
}
