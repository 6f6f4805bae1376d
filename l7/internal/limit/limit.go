package limit

import (
	"log/slog"
	"net/netip"
	rtmetrics "runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// Reasons a connection is shed, as logged and as the "reason" metric label.
const (
	ShedMaxConns  = "max_conns"
	ShedPerClient = "max_conns_per_client"
	ShedMemory    = "memory"
)

// ShedReasons lists every reason a connection is shed.
var ShedReasons = [...]string{ShedMaxConns, ShedPerClient, ShedMemory}

// Reasons a stream is refused (egressd_streams_refused_total's label).
const (
	RefusedStreamsPerClient = "max_streams_per_client"
	RefusedStreamsMemory    = "memory"
)

// PressureAllowance: under memory pressure, a client with fewer open
// connections than this is still admitted.
const PressureAllowance = 16

// PressureStreamAllowance: under memory pressure, a client with fewer open
// streams than this may still open one.
const PressureStreamAllowance int32 = 64

// A Key identifies a client for the per-client limits: its address, or
// for host processes their cgroup. The zero key counts for no client.
type Key struct {
	Addr   netip.Addr
	Cgroup uint64
}

// Limiter counts the open client connections, overall and per client, and
// the open h2c streams per client. Its methods are safe for concurrent use.
type Limiter struct {
	maxConns, perClient int
	perClientStreams    int

	mu       sync.Mutex
	open     int
	byClient map[Key]int32
	streams  map[Key]int32 // open h2c streams

	// memory: the runtime's limit when it was last read, the threshold
	// above which it sheds (0: none), and whether it is above it.
	memLimit  atomic.Int64
	memShed   atomic.Int64
	memOver   atomic.Bool
	memLastNs atomic.Int64 // when the memory figures were last read (UnixNano)
	memMu     sync.Mutex   // one reader of runtime/metrics at a time
	memSample []rtmetrics.Sample

	log     *slog.Logger
	shedLog [len(ShedReasons)]shedLogState
}

// New returns a Limiter with the given bounds (0 or negative: none) that
// writes its shed lines (Shed) to log.
func New(maxConns, perClient, perClientStreams int, log *slog.Logger) *Limiter {
	l := &Limiter{maxConns: maxConns, perClient: perClient, perClientStreams: perClientStreams,
		byClient: make(map[Key]int32), streams: make(map[Key]int32), log: log,
		memSample: []rtmetrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}}
	l.readMemory(time.Now())
	return l
}

// Admit counts a new connection, for client unless it is the zero key, or
// says why it must be shed ("" when admitted). An admitted connection is
// released once, when it ends, with the key of its last admission.
func (l *Limiter) Admit(client Key, now time.Time) string {
	pressure := l.memoryOver(now)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.maxConns > 0 && l.open >= l.maxConns {
		return ShedMaxConns
	}
	if reason := l.addClient(client, pressure); reason != "" {
		return reason
	}
	l.open++
	return ""
}

// AdmitClient counts an admitted connection for client too (its identity
// was learnt after accept), or says why it must be shed; then release it
// with the zero key.
func (l *Limiter) AdmitClient(client Key, now time.Time) string {
	pressure := l.memoryOver(now)
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.addClient(client, pressure)
}

// addClient counts one connection more for client, if under the limit
// (under memory pressure: under PressureAllowance); l.mu is held. The
// zero key is not counted, and under pressure not admitted.
func (l *Limiter) addClient(client Key, pressure bool) string {
	if client == (Key{}) {
		return ""
	}
	return countUp(l.byClient, client, l.perClient, pressure, PressureAllowance, ShedPerClient, ShedMemory)
}

// countUp adds one to m[client] unless it has reached limit (> 0), or
// allowance under pressure: then it returns overLimit or overMemory.
func countUp(m map[Key]int32, client Key, limit int, pressure bool, allowance int32, overLimit, overMemory string) string {
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
func countDown(m map[Key]int32, client Key) {
	if n := m[client] - 1; n > 0 {
		m[client] = n
	} else {
		delete(m, client)
	}
}

// Release ends a connection admitted by Admit (and AdmitClient).
func (l *Limiter) Release(client Key) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if client == (Key{}) {
		return
	}
	countDown(l.byClient, client)
}

// AdmitStream counts a new stream of client, or says why it is refused
// ("" when admitted). The zero key is not counted. An admitted stream is
// released with ReleaseStream.
func (l *Limiter) AdmitStream(client Key, now time.Time) string {
	if client == (Key{}) {
		return ""
	}
	pressure := l.memoryOver(now)
	l.mu.Lock()
	defer l.mu.Unlock()
	return countUp(l.streams, client, l.perClientStreams, pressure, PressureStreamAllowance, RefusedStreamsPerClient, RefusedStreamsMemory)
}

// ReleaseStream ends a stream admitted by AdmitStream.
func (l *Limiter) ReleaseStream(client Key) {
	if client == (Key{}) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	countDown(l.streams, client)
}

// StreamClients is the number of clients holding h2c streams open.
func (l *Limiter) StreamClients() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.streams)
}
