package pool

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// conn is a pooled connection as l7's upConn is one: a net.Conn (one end
// of a pipe, so that a test sees its close from the other end) with a Node.
type conn struct {
	Node[*conn]
	nc net.Conn
}

func (c *conn) PoolNode() *Node[*conn] { return &c.Node }
func (c *conn) Close() error           { return c.nc.Close() }

func TestPoolBounds(t *testing.T) {
	pool := New[*conn](2, 3, 4, time.Minute)
	defer pool.CloseAll()
	var peers []net.Conn
	t.Cleanup(func() {
		for _, c := range peers {
			c.Close()
		}
	})
	put := func(client, host string) *conn {
		a, b := net.Pipe()
		peers = append(peers, b)
		uc := &conn{nc: a, Node: Node[*conn]{Key: Key{Host: host}}}
		pool.Put(uc, netip.MustParseAddr(client), time.Now())
		return uc
	}
	put("198.18.64.1", "a")
	put("198.18.64.1", "a")
	put("198.18.64.1", "a") // over maxPerKey: the oldest "a" goes
	put("198.18.64.1", "b") // over maxPerClient: the oldest of 198.18.64.1 goes
	if pool.Idle() != 3 || pool.byKey[Key{Host: "a"}].n != 2 {
		t.Fatalf("idle %d, want 3 with 2 under a", pool.Idle())
	}
	put("198.18.64.2", "c")
	put("198.18.64.2", "d") // over maxTotal: the oldest of all goes
	if pool.Idle() != 4 || pool.byClient[netip.MustParseAddr("198.18.64.1")].n != 2 {
		t.Fatalf("idle %d, want 4 with 2 from 198.18.64.1", pool.Idle())
	}
	newest := pool.Get(Key{Host: "d"}, time.Now())
	if newest == nil || !newest.Reused || pool.Get(Key{Host: "d"}, time.Now()) != nil || pool.Idle() != 3 {
		t.Fatal("get did not take the one idle d")
	}
	newest.Close()
}

func TestPoolSweepClosesStaleIdleConnections(t *testing.T) {
	pool := New[*conn](4, 4, 4, 50*time.Millisecond)
	defer pool.CloseAll()
	a, b := net.Pipe()
	defer b.Close()
	t0 := time.Now()
	pool.Put(&conn{nc: a, Node: Node[*conn]{Key: Key{Host: "once.allowed.test"}}}, netip.Addr{}, t0)
	c, d := net.Pipe()
	defer d.Close()
	// 100 ms later by the pool's clock (it takes now): the sweep runs.
	pool.Put(&conn{nc: c, Node: Node[*conn]{Key: Key{Host: "other.allowed.test"}}}, netip.Addr{}, t0.Add(100*time.Millisecond))
	b.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := b.Read(make([]byte, 1)); err == nil {
		t.Fatal("stale idle connection still open")
	}
	if len(pool.byKey) != 1 || pool.Idle() != 1 {
		t.Fatalf("pool keeps %d keys, %d connections, want 1", len(pool.byKey), pool.Idle())
	}
}

// The keep-alive cycle, Get and Put of the same key, allocates nothing,
// and the lists emptied by it stay bounded when keys keep changing.
func TestPoolCycleAndEmptyLists(t *testing.T) {
	pool := New[*conn](2, 2, 4, time.Minute)
	defer pool.CloseAll()
	a, b := net.Pipe()
	defer b.Close()
	client := netip.MustParseAddr("198.19.40.1")
	uc := &conn{nc: a, Node: Node[*conn]{Key: Key{Host: "a"}}}
	now := time.Now()
	pool.Put(uc, client, now)
	if n := testing.AllocsPerRun(100, func() {
		if pool.Get(Key{Host: "a"}, now) != uc {
			t.Fatal("Get did not return the idle connection")
		}
		pool.Put(uc, client, now)
	}); n != 0 {
		t.Errorf("Get+Put allocates %v times, want 0", n)
	}
	for i := range 100 { // each key used once: its list empties
		if pool.Get(uc.Key, now) != uc {
			t.Fatal("Get did not return the idle connection")
		}
		uc.Key = Key{Host: "h", Port: uint16(i)}
		pool.Put(uc, client, now)
	}
	if len(pool.byKey) > 2*4 || pool.Idle() != 1 {
		t.Fatalf("%d key lists, %d idle; want at most 8 lists, 1 idle", len(pool.byKey), pool.Idle())
	}
}
