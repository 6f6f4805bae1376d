package l7

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Admission at accept: a connection over a limit is shed — closed at once,
// before a byte of it is read — so that one client cannot take the fds,
// memory or goroutines the others need. The limits, in the order checked:
//
//   - MaxConns: client connections open at once, all clients together;
//   - MaxConnsPerClient: connections open at once from one client: the
//     source address for pods; for host processes, which all connect from
//     loopback, the cgroup of the process that connected when OriginalDst
//     knows it (OriginalDstCgroup; checked right after the lookup, before
//     a byte is read), else the loopback address they share;
//   - memory: while the process's resident memory is above
//     memoryShedFraction of the runtime's limit (debug.SetMemoryLimit,
//     GOMEMLIMIT), a new connection is shed unless its client has fewer
//     than pressureAllowance open: the clients holding many connections
//     (the likely cause) are refused, the others still served, and the
//     connections already open can finish before the kernel's OOM killer
//     would end them all. Resident memory, not the runtime's own count:
//     x/net maps buffers it barely touches (512 KiB per upstream h2 stream
//     with a body), which the OOM killer does not see.
//
// Shed connections are counted by reason and logged at most once per
// shedLogEvery per reason, with the count since the last line.

// Reasons a connection is shed, as logged and as the "reason" metric label.
const (
	shedMaxConns  = "max_conns"
	shedPerClient = "max_conns_per_client"
	shedMemory    = "memory"
)

var shedReasons = [...]string{shedMaxConns, shedPerClient, shedMemory}

// memoryShedFraction of the runtime's memory limit: above it, new
// connections are shed.
const memoryShedFraction = 0.9

// pressureAllowance: under memory pressure, a client with fewer open
// connections than this is still admitted.
const pressureAllowance = 16

// memoryCheckEvery bounds how often admit reads the runtime's memory
// figures (a flood of connects reads them at most this often).
const memoryCheckEvery = 20 * time.Millisecond

// shedLogEvery is the least time between two log lines of one shed reason.
const shedLogEvery = 5 * time.Second

// A clientKey identifies a client for MaxConnsPerClient: its address, or
// for host processes their cgroup. The zero key counts for no client.
type clientKey struct {
	addr   netip.Addr
	cgroup uint64
}

// limiter counts the open client connections, overall and per client.
type limiter struct {
	maxConns, perClient int
	perClientStreams    int // streamlimit.go

	mu       sync.Mutex
	open     int
	byClient map[clientKey]int32
	streams  map[clientKey]int32 // open h2c streams (streamlimit.go)

	// memory: the runtime's limit when admit last read it, the threshold
	// above which it sheds (0: none), and whether it is above it.
	memLimit  atomic.Int64
	memShed   atomic.Int64
	memOver   atomic.Bool
	memLastNs atomic.Int64 // when the memory figures were last read (UnixNano)
	memMu     sync.Mutex   // one reader of runtime/metrics at a time
	memSample []rtmetrics.Sample

	log     *slog.Logger
	shedLog [len(shedReasons)]shedLogState
}

type shedLogState struct {
	last   atomic.Int64 // UnixNano of the last line
	unseen atomic.Int64 // shed since the last line
}

func newLimiter(maxConns, perClient, perClientStreams int, log *slog.Logger) *limiter {
	l := &limiter{maxConns: maxConns, perClient: perClient, perClientStreams: perClientStreams,
		byClient: make(map[clientKey]int32), streams: make(map[clientKey]int32), log: log,
		memSample: []rtmetrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}}
	l.readMemory(time.Now())
	return l
}

// admit counts a new connection, for client unless it is the zero key, or
// says why it must be shed ("" when admitted). An admitted connection is
// released once, when it ends, with the key of its last admission.
func (l *limiter) admit(client clientKey, now time.Time) string {
	pressure := l.memoryOver(now)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.maxConns > 0 && l.open >= l.maxConns {
		return shedMaxConns
	}
	if reason := l.addClient(client, pressure); reason != "" {
		return reason
	}
	l.open++
	return ""
}

// admitClient counts an admitted connection for client too (its identity
// was learnt after accept), or says why it must be shed; then release it
// with the zero key.
func (l *limiter) admitClient(client clientKey, now time.Time) string {
	pressure := l.memoryOver(now)
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.addClient(client, pressure)
}

// addClient counts one connection more for client, if under the limit
// (under memory pressure: under pressureAllowance); l.mu is held. The
// zero key is not counted, and under pressure not admitted.
func (l *limiter) addClient(client clientKey, pressure bool) string {
	if client == (clientKey{}) {
		return ""
	}
	return countUp(l.byClient, client, l.perClient, pressure, pressureAllowance, shedPerClient, shedMemory)
}

// countUp adds one to m[client] unless it has reached limit (> 0), or
// allowance under pressure: then it returns overLimit or overMemory.
func countUp(m map[clientKey]int32, client clientKey, limit int, pressure bool, allowance int32, overLimit, overMemory string) string {
	n := m[client]
	if limit > 0 && int(n) >= limit {
		return overLimit
	}
	if pressure && n >= allowance {
		return overMemory
	}
	m[client] = n + 1
	return ""
}

// countDown takes one from m[client], deleting it at 0.
func countDown(m map[clientKey]int32, client clientKey) {
	if n := m[client] - 1; n > 0 {
		m[client] = n
	} else {
		delete(m, client)
	}
}

func (l *limiter) release(client clientKey) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if client == (clientKey{}) {
		return
	}
	countDown(l.byClient, client)
}

// memoryOver reports whether the runtime's memory is above the shedding
// threshold, reading the figures at most every memoryCheckEvery.
func (l *limiter) memoryOver(now time.Time) bool {
	if now.UnixNano()-l.memLastNs.Load() >= int64(memoryCheckEvery) {
		l.readMemory(now)
	}
	return l.memOver.Load()
}

// readMemory reads the runtime's memory limit and the memory it counts
// against it (all memory mapped by the runtime but what it released).
func (l *limiter) readMemory(now time.Time) {
	if !l.memMu.TryLock() {
		return // another accept loop is reading them
	}
	defer l.memMu.Unlock()
	l.memLastNs.Store(now.UnixNano())
	limit := debug.SetMemoryLimit(-1)
	l.memLimit.Store(limit)
	if limit <= 0 || limit == math.MaxInt64 {
		l.memShed.Store(0)
		l.memOver.Store(false)
		return
	}
	shed := int64(float64(limit) * memoryShedFraction)
	l.memShed.Store(shed)
	used, err := residentBytes()
	if err != nil { // no /proc: what the runtime counts against its limit
		rtmetrics.Read(l.memSample)
		used = int64(l.memSample[0].Value.Uint64() - l.memSample[1].Value.Uint64())
	}
	l.memOver.Store(used >= shed)
}

// residentBytes is the process's resident set size (/proc/self/statm).
func residentBytes() (int64, error) {
	var buf [128]byte
	f, err := os.Open("/proc/self/statm")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, _ := f.Read(buf[:])
	fields := bytes.Fields(buf[:n])
	if len(fields) < 2 {
		return 0, errors.New("/proc/self/statm: unexpected format")
	}
	pages, err := strconv.ParseInt(string(fields[1]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/self/statm: %w", err)
	}
	return pages * int64(os.Getpagesize()), nil
}

// shed records a shed connection: the metric, and a log line unless one
// for the same reason was written less than shedLogEvery ago.
func (p *Proxy) shed(reason string, client netip.AddrPort, now time.Time) {
	p.metrics.shed.WithLabelValues(reason).Inc()
	l := p.limits
	for i, r := range shedReasons {
		if r != reason {
			continue
		}
		st := &l.shedLog[i]
		n := st.unseen.Add(1)
		last := st.last.Load()
		if now.UnixNano()-last < int64(shedLogEvery) || !st.last.CompareAndSwap(last, now.UnixNano()) {
			return
		}
		st.unseen.Add(-n)
		l.log.Warn("shedding new connections: limit reached", "reason", reason, "client", client.Addr(),
			"shed", n, "max_conns", l.maxConns, "max_conns_per_client", l.perClient,
			"memory_shed_bytes", l.memShed.Load())
	}
}

// admit admits a connection just accepted, or sheds it: closed at once
// with a reset (nothing of it is read), counted and logged. A host
// process's connection (from loopback) is counted for its cgroup after the
// lookup (admitCgroup) when OriginalDst tells cgroups.
func (p *Proxy) admit(c *clientConn) bool {
	c.limitKey = clientKey{addr: c.client.Addr()}
	if _, byCgroup := p.cfg.OriginalDst.(OriginalDstCgroup); byCgroup && c.limitKey.addr.IsLoopback() && !c.gateway {
		c.limitKey = clientKey{}
	}
	reason := p.limits.admit(c.limitKey, c.start)
	if reason == "" {
		return true
	}
	p.shedConn(c, reason)
	return false
}

// admitCgroup counts a host process's connection for its cgroup (for its
// address when the cgroup is unknown, 0); false: it was shed.
func (p *Proxy) admitCgroup(c *clientConn, cgroup uint64) bool {
	key := clientKey{cgroup: cgroup}
	if cgroup == 0 {
		key = clientKey{addr: c.client.Addr()}
	}
	if reason := p.limits.admitClient(key, time.Now()); reason != "" {
		p.shedConn(c, reason)
		return false
	}
	c.limitKey = key
	return true
}

func (p *Proxy) shedConn(c *clientConn, reason string) {
	p.shed(reason, c.client, time.Now()) // counted before the client can see it
	if tc, ok := c.nc.(*net.TCPConn); ok {
		tc.SetLinger(0) // RST: no FIN handshake nor TIME_WAIT kept for a shed connection
	}
	c.nc.Close()
}

// temporaryAcceptError reports whether Accept may succeed again after a
// pause, as net/http's Serve retries its "temporary" errors: timeouts; the
// process or the kernel out of fds, buffers or memory; a connection that
// failed before it was accepted (accept(2): Linux passes pending network
// errors of the new socket on, "treat them like EAGAIN by retrying"); a
// firewall refusing one. Anything else (the listener closed) ends Serve.
func temporaryAcceptError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	switch errno {
	case syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EINTR, syscall.EAGAIN, syscall.EPERM,
		syscall.ENETDOWN, syscall.EPROTO, syscall.ENOPROTOOPT, syscall.EHOSTDOWN, syscall.ENONET,
		syscall.EHOSTUNREACH, syscall.EOPNOTSUPP, syscall.ENETUNREACH:
		return true
	}
	return false
}
