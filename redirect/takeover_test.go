package redirect

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/egressd/egressd/internal/kerneltest"
)

// Agents replacing each other while a client connects in a loop: every
// connection reaches the proxy, which finds its original destination.
func TestTakeoverHasNoGap(t *testing.T) {
	tp := newTopo(t)
	opts := tp.options()
	r := tp.attach(t, opts)
	ext4 := hostPort(extAddr4, tp.extPort)

	wait := startChild(t, tp.cg, nil, job{Network: "tcp4", Addr: ext4, N: 100, For: 1500 * time.Millisecond})
	for range 5 {
		time.Sleep(200 * time.Millisecond)
		next := tp.attach(t, opts)
		if a, b := mapID(t, r.objs.ConnOrigs), mapID(t, next.objs.ConnOrigs); a != b {
			t.Fatalf("orig_dsts not reused: map %d, then %d", a, b)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		r = next
	}
	o := wait()
	want(t, "during takeovers", o, "orig "+ext4)
	t.Logf("%d connections across 5 takeovers", o.Replies["orig "+ext4])

	// No agent: the programs stay attached. The proxy port answers
	// without knowing the connection, and once closed it refuses.
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	tp.proxy.use(nil)
	want(t, "no agent", runChild(t, tp.cg, nil, job{Network: "tcp4", Addr: ext4, N: 2}), "proxy")
	tp.proxy.ln.Close()
	wantErr(t, "no agent, no proxy", runChild(t, tp.cg, nil, job{Network: "tcp4", Addr: ext4, N: 2}), "ECONNREFUSED")
}

// 10,000 redirected connections leave no original destination behind.
func TestLookupMapsDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 connections")
	}
	tp := newTopo(t)
	r := tp.attach(t, tp.options())
	ext4 := hostPort(extAddr4, tp.extPort)
	want(t, "10k", runChild(t, tp.cg, nil, job{Network: "tcp4", Addr: ext4, N: 10000}), "orig "+ext4)
	for _, m := range []struct {
		name string
		n    int
	}{{"conn_origs", countEntries(t, r.objs.ConnOrigs)}} {
		if m.n != 0 {
			t.Errorf("%s holds %d entries after 10,000 connections; want 0", m.name, m.n)
		}
	}
	if s, _ := r.Stats(); s.Tracked != 10000 {
		t.Errorf("tracked %d connections, want 10000", s.Tracked)
	}
}

func countEntries(t *testing.T, m *ebpf.Map) int {
	t.Helper()
	n := 0
	var k, v []byte
	it := m.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// Attach/Close cycles leak no file descriptors; Uninstall detaches every
// program and removes every pin.
func TestUninstall(t *testing.T) {
	tp := newTopo(t)
	cg2 := kerneltest.Cgroup(t)
	opts := tp.options()
	opts.Cgroups = []string{tp.cg, cg2}
	ext4 := hostPort(extAddr4, tp.extPort)

	hooksPerCgroup := 0
	cycle := func() {
		r, err := Attach(opts)
		if err != nil {
			t.Fatal(err)
		}
		hooksPerCgroup = loadedHooks(r)
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	}
	cycle() // warm caches (feature probes)
	fds := countFDs(t)
	for range 3 {
		cycle()
	}
	if n := countFDs(t); n != fds {
		t.Errorf("%d open fds after 3 attach/close cycles, %d before", n, fds)
	}
	links, _ := os.ReadDir(filepath.Join(tp.pinDir, "links"))
	if len(links) != 2*hooksPerCgroup {
		t.Errorf("%d pinned links, want %d", len(links), 2*hooksPerCgroup)
	}

	// Dropping a cgroup from the options detaches it.
	opts.Cgroups = []string{tp.cg}
	cycle()
	want(t, "dropped cgroup", runChild(t, cg2, nil, job{Network: "tcp4", Addr: ext4, N: 2}), "direct")
	want(t, "kept cgroup", runChild(t, tp.cg, nil, job{Network: "tcp4", Addr: ext4, N: 2}), "proxy")

	if err := Uninstall(tp.pinDir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tp.pinDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin directory after uninstall: %v", err)
	}
	want(t, "uninstalled", runChild(t, tp.cg, nil, job{Network: "tcp4", Addr: ext4, N: 2}), "direct")
	if err := Uninstall(tp.pinDir); err != nil {
		t.Errorf("second uninstall: %v", err)
	}
}

func countFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

func mapID(t *testing.T, m *ebpf.Map) ebpf.MapID {
	t.Helper()
	info, err := m.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, ok := info.ID()
	if !ok {
		t.Fatal("no map ID")
	}
	return id
}

// With no bpffs mounted (in a private mount namespace), Attach mounts it
// and pins under <bpffs>/egressd; Uninstall("") removes them.
func TestDefaultPinDir(t *testing.T) {
	kerneltest.Require(t)
	cg := kerneltest.Cgroup(t)
	o := runChild(t, "", nil, job{DefaultPins: cg}, "unshare", "--mount", "--propagation", "private")
	for reply := range o.Replies {
		var links, nh int // nh: hooks without the two optional guards at least
		if _, err := fmt.Sscanf(reply, defaultBPFFS+": %d links, %d hooks", &links, &nh); err != nil || links != nh || nh < len(hooks)-2 {
			t.Errorf("default pins: %q, want %s: as many links as hooks", reply, defaultBPFFS)
		}
	}
	if len(o.Replies) != 1 || len(o.Errors) != 0 {
		t.Errorf("default pins: replies %v errors %v", o.Replies, o.Errors)
	}
}

// A cgroup removed while attached (a pod deleted) does not stop the next
// agent from starting, nor Uninstall.
func TestRemovedCgroup(t *testing.T) {
	tp := newTopo(t)
	gone := kerneltest.Cgroup(t)
	opts := tp.options()
	opts.Cgroups = []string{tp.cg, gone}
	tp.attach(t, opts).Close()
	if err := os.Remove(gone); err != nil {
		t.Fatal(err)
	}
	opts.Cgroups = []string{tp.cg}
	r := tp.attach(t, opts)
	ext4 := hostPort(extAddr4, tp.extPort)
	want(t, "still redirected", runChild(t, tp.cg, nil, job{Network: "tcp4", Addr: ext4, N: 2}), "orig "+ext4)
	links, _ := os.ReadDir(filepath.Join(tp.pinDir, "links"))
	if len(links) != loadedHooks(r) {
		t.Errorf("%d pinned links, want %d", len(links), loadedHooks(r))
	}
}
