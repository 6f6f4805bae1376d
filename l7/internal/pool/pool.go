// Package pool keeps l7's idle upstream HTTP/1.1 connections for reuse,
// bounded per key (TLS, egress proxy, host, port, original address), per
// client that returned them and in all, the oldest going first, and aged
// out after the idle timeout. It holds connections, never dials or reads
// them: whether a pooled connection may still carry a request is l7's
// check on taking it (l7/probe.go).
//
// Why a package of its own: the pool is where one client's connection can
// become another's, and where one client could make the node hold a socket
// per host it names; kept apart, its bounds are tested on their own
// (pool_test.go, the clock passed in) and it depends on nothing of the
// proxy. Connections embed Node, so idling one allocates nothing.
//
// Files: pool.go (Key, Node, Pool: Get, Put, the bounds, the sweep,
// CloseAll).
package pool

import (
	"net/netip"
	"sync"
	"time"
)

// Key identifies interchangeable upstream connections.
type Key struct {
	Host   string     // rules.CanonicalHost of the request (SNI for TLS)
	Target netip.Addr // DialOriginal: the original IP; DialResolve: zero (resolved at dial)
	// Literal is the IP the matched rule names literally, which the
	// upstream address policy lets through whatever its class (zero:
	// none): a connection dialled under that allowance (to 127.0.0.1, say)
	// serves only requests whose own rule gives it, never those of a
	// scope or rule set that does not.
	Literal netip.Addr
	Port    uint16 // original destination port
	TLS     bool   // TLS originated (HTTPS port)
	Proxy   bool   // goes through the egress proxy
	// (The fields after Host are in one run of memory, which Key's
	// equality and hash compare and hash at once.)
}

// Node is the pool's part of a connection: a connection type embeds it and
// returns it from PoolNode, so that idling a connection allocates nothing.
type Node[C any] struct {
	Key    Key  // set before the first Put
	Reused bool // taken from the pool by Get (it may have been closed by the peer)

	// While idle: when it was returned, the lists it is on (its key's,
	// its owner's: the client that returned it) and its places in the
	// pool's three lists (listKey, listAll, listClient).
	idleSince     time.Time
	keyList, mine *idleList[C]
	links         [3]struct{ prev, next C }
}

// Conn is what the pool holds: a pointer to a connection embedding Node.
type Conn[C any] interface {
	comparable
	PoolNode() *Node[C]
	Close() error
}

// The lists an idle connection is on.
const (
	listKey    = iota // the connections of its poolKey; the newest is reused first
	listAll           // every idle connection, oldest first: expiry and the total bound
	listClient        // the idle connections its owner returned: the per-client bound
)

// idleList is a doubly linked list of idle connections through their
// links[which].
type idleList[C any] struct {
	head, tail C
	n          int
}

func pushBack[C Conn[C]](l *idleList[C], uc C, which int) {
	var none C
	uc.PoolNode().links[which].prev, uc.PoolNode().links[which].next = l.tail, none
	if l.tail != none {
		l.tail.PoolNode().links[which].next = uc
	} else {
		l.head = uc
	}
	l.tail = uc
	l.n++
}

func remove[C Conn[C]](l *idleList[C], uc C, which int) {
	var none C
	lk := &uc.PoolNode().links[which]
	if lk.prev != none {
		lk.prev.PoolNode().links[which].next = lk.next
	} else {
		l.head = lk.next
	}
	if lk.next != none {
		lk.next.PoolNode().links[which].prev = lk.prev
	} else {
		l.tail = lk.prev
	}
	lk.prev, lk.next = none, none
	l.n--
}

// Pool keeps idle upstream connections: at most maxPerKey per key,
// maxPerClient returned by one client address (so that one client naming
// thousands of hosts cannot make the node hold a socket to each) and
// maxTotal in all; over a bound, the oldest idle connection concerned is
// closed. A connection idle for longer than maxIdle is closed.
//
// The lists of a key and of a client stay in their maps when they empty,
// so that the keep-alive cycle (Get, Put of the same key) costs one map
// lookup each way and allocates nothing: a map delete per Get and an
// insert per Put were a fifth of the pool's cost per request. Empty
// lists go in the sweep (once per maxIdle), and when a map holds twice
// maxTotal lists (at most maxTotal can be non-empty).
type Pool[C Conn[C]] struct {
	maxPerKey, maxPerClient, maxTotal int
	maxIdle                           time.Duration

	mu        sync.Mutex
	byKey     map[Key]*idleList[C]
	byClient  map[netip.Addr]*idleList[C]
	all       idleList[C]
	closed    bool
	lastSweep time.Time
}

// New returns an empty pool with those bounds.
func New[C Conn[C]](maxPerKey, maxPerClient, maxTotal int, maxIdle time.Duration) *Pool[C] {
	return &Pool[C]{maxPerKey: maxPerKey, maxPerClient: maxPerClient, maxTotal: maxTotal, maxIdle: maxIdle,
		byKey: make(map[Key]*idleList[C]), byClient: make(map[netip.Addr]*idleList[C])}
}

// Get takes the newest idle connection for k, or the zero C (nil); now is
// the current time (to the microsecond: it only ages idle connections). The
// caller checks it (l7/probe.go) before use.
func (u *Pool[C]) Get(k Key, now time.Time) C {
	u.mu.Lock()
	defer u.mu.Unlock()
	var none C
	l := u.byKey[k]
	if l == nil || l.tail == none {
		return none
	}
	uc := l.tail
	if now.Sub(uc.PoolNode().idleSince) > u.maxIdle { // the newest is stale: so are the others
		u.expire(now)
		return none
	}
	u.unlink(uc)
	uc.PoolNode().Reused = true
	return uc
}

// unlink takes uc off every list; u.mu is held.
func (u *Pool[C]) unlink(uc C) {
	n := uc.PoolNode()
	remove(n.keyList, uc, listKey)
	remove(n.mine, uc, listClient)
	remove(&u.all, uc, listAll)
	n.keyList, n.mine = nil, nil
}

// Put returns uc, last used by client, to the pool (or closes it when the
// pool is closed); now is the current time.
func (u *Pool[C]) Put(uc C, client netip.Addr, now time.Time) {
	n := uc.PoolNode()
	n.idleSince = now
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		uc.Close()
		return
	}
	l, c := listOf(u.byKey, n.Key, u.maxTotal), listOf(u.byClient, client, u.maxTotal)
	// Over a bound, the oldest connection concerned goes first.
	if l.n >= u.maxPerKey {
		u.evict(l.head)
	}
	if c.n >= u.maxPerClient {
		u.evict(c.head)
	}
	if u.all.n >= u.maxTotal {
		u.evict(u.all.head)
	}
	pushBack(l, uc, listKey)
	pushBack(c, uc, listClient)
	pushBack(&u.all, uc, listAll)
	n.keyList, n.mine = l, c
	if now.Sub(u.lastSweep) > u.maxIdle {
		u.lastSweep = now
		u.expire(now)
		dropEmpty(u.byKey)
		dropEmpty(u.byClient)
	}
	u.mu.Unlock()
}

// listOf returns m's list for k, adding one if there is none; a map
// holding 2*maxTotal lists loses its empty ones first (u.mu is held).
func listOf[K comparable, C any](m map[K]*idleList[C], k K, maxTotal int) *idleList[C] {
	if l := m[k]; l != nil {
		return l
	}
	if len(m) >= 2*maxTotal {
		dropEmpty(m)
	}
	l := new(idleList[C])
	m[k] = l
	return l
}

// dropEmpty deletes m's empty lists; u.mu is held.
func dropEmpty[K comparable, C any](m map[K]*idleList[C]) {
	for k, l := range m {
		if l.n == 0 {
			delete(m, k)
		}
	}
}

// evict closes the idle connection uc; u.mu is held.
func (u *Pool[C]) evict(uc C) {
	u.unlink(uc)
	uc.Close()
}

// expire closes the connections idle for longer than maxIdle, so that hosts
// asked for once do not keep sockets open until Shutdown. Put runs it at
// most once per maxIdle; u.mu is held.
func (u *Pool[C]) expire(now time.Time) {
	var none C
	for uc := u.all.head; uc != none && now.Sub(uc.PoolNode().idleSince) > u.maxIdle; uc = u.all.head {
		u.evict(uc)
	}
}

// Idle returns the number of idle connections.
func (u *Pool[C]) Idle() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.all.n
}

// CloseAll closes every idle connection and makes Put close from now on.
func (u *Pool[C]) CloseAll() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closed = true
	var none C
	for uc := u.all.head; uc != none; uc = u.all.head {
		u.evict(uc)
	}
	clear(u.byKey)
	clear(u.byClient)
}
