package redirect

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/egressd/egressd/bpf"

	"github.com/egressd/egressd/internal/kerneltest"
)

// BenchmarkConnect measures what the hooks add to a connect: a child in
// the test cgroup connects, the server accepts, answers one line and
// closes, b.N times.
//
//   - no-hook: to the proxy's port on 127.0.0.1, from a cgroup with
//     nothing attached.
//   - hook-skip: the same with the programs attached (the loopback skip).
//   - hook-redirect: to an external address, rewritten to the proxy,
//     tracked by sockops, and looked up (and deleted) by the proxy.
//
// Compare ns/connect within one run; absolute figures depend on the machine
// (and on a shared one the noise exceeds the hooks' cost). bpf-ns/connect
// is exact: the kernel's own run time of the programs (BPF_STATS_RUN_TIME)
// divided by the connects.
func BenchmarkConnect(b *testing.B) {
	tp := newTopo(b)
	bare := kerneltest.Cgroup(b)
	r := tp.attach(b, tp.options())
	tp.proxy.use(r)
	proxy4 := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), tp.proxy.port()).String()
	ext4 := hostPort(extAddr4, tp.extPort)
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatal(err)
	}
	defer stats.Close()
	run := func(b *testing.B, cg, addr, reply string) {
		before := progRuntime(b, r)
		o := runChild(b, cg, nil, job{Network: "tcp4", Addr: addr, N: b.N})
		b.ReportMetric(float64(progRuntime(b, r)-before)/float64(b.N), "bpf-ns/connect")
		if len(o.Errors) > 0 || o.Replies[reply] != b.N {
			b.Fatalf("replies %v errors %v; want %d %q", o.Replies, o.Errors, b.N, reply)
		}
		b.ReportMetric(o.NsPerConn, "ns/connect")
		b.ReportMetric(1e9/o.NsPerConn, "connects/s")
	}
	// The proxy looks up every connection; only redirected ones are found.
	b.Run("no-hook", func(b *testing.B) { run(b, bare, proxy4, "miss") })
	b.Run("hook-skip", func(b *testing.B) { run(b, tp.cg, proxy4, "miss") })
	b.Run("hook-redirect", func(b *testing.B) { run(b, tp.cg, ext4, "orig "+ext4) })
}

// progRuntime is the total run time of r's programs, in ns.
func progRuntime(b *testing.B, r *Redirector) (ns int64) {
	p := &r.objs.EgressdPrograms
	for _, prog := range []*ebpf.Program{p.Connect4, p.Connect6, p.Sendmsg4, p.Sendmsg6, p.TrackConnect} {
		s, err := prog.Stats()
		if err != nil {
			b.Fatal(err)
		}
		ns += s.Runtime.Nanoseconds()
	}
	return ns
}

// BenchmarkLookup is the proxy's cost per accepted connection: one
// BPF_MAP_LOOKUP_AND_DELETE_ELEM on a hit.
func BenchmarkLookup(b *testing.B) {
	tp := newTopo(b)
	r := tp.attach(b, tp.options())
	proxy := netip.MustParseAddrPort("127.0.0.1:15001")
	orig := bpf.EgressdOrigDst{Addr: words(extAddr4), Port: 80}
	client := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, byte(i >> 16), byte(i >> 8)}), uint16(i))
	}
	// Fill in chunks that fit the LRU map, timing only the lookups.
	const chunk = 10000
	b.ResetTimer()
	for done := 0; done < b.N; done += chunk {
		n := min(chunk, b.N-done)
		b.StopTimer()
		for i := range n {
			c := client(i)
			key := bpf.EgressdTuple{ClientAddr: words(c.Addr()), ProxyAddr: words(proxy.Addr()), ClientPort: c.Port(), ProxyPort: proxy.Port()}
			if err := r.objs.OrigDsts.Put(&key, &orig); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		for i := range n {
			if _, ok := r.Lookup(client(i), proxy); !ok {
				b.Fatal("miss")
			}
		}
	}
}
