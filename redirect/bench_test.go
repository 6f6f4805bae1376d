package redirect

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/egressd/egressd/bpf"

	"github.com/egressd/egressd/internal/kerneltest"
)

// BenchmarkConnect measures what the hooks add to a connect: children in
// test cgroups connect, the server accepts, answers one line and closes.
// Three cases, interleaved in rounds so that a noisy machine disturbs them
// alike; each metric is the median over the rounds:
//
//   - no-hook: to the proxy's port on 127.0.0.1, from a cgroup with
//     nothing attached.
//   - hook-skip: the same from the attached cgroup (the loopback skip).
//   - hook-redirect: to an external address, rewritten to the proxy,
//     tracked by sockops, and looked up (and deleted) by the proxy.
//
// The proxy looks up every connection in all three cases. ns/connect is
// wall time in the child; bpf-ns is exact: the kernel's own run time of
// the programs (BPF_STATS_RUN_TIME) per connect.
func BenchmarkConnect(b *testing.B) {
	tp := newTopo(b)
	bare := kerneltest.Cgroup(b)
	r := tp.attach(b, tp.options())
	proxy4 := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), tp.proxy.port()).String()
	ext4 := hostPort(extAddr4, tp.extPort)
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatal(err)
	}
	defer stats.Close()

	cases := []struct {
		name, cg, addr, reply string
		wall, bpf             []float64
	}{
		{name: "no-hook", cg: bare, addr: proxy4, reply: "miss"},
		{name: "hook-skip", cg: tp.cg, addr: proxy4, reply: "miss"},
		{name: "hook-redirect", cg: tp.cg, addr: ext4, reply: "orig " + ext4},
	}
	const rounds = 5
	n := max(b.N/rounds, 1)
	for range rounds {
		for i := range cases {
			c := &cases[i]
			before := progRuntime(b, r)
			o := runChild(b, c.cg, nil, job{Network: "tcp4", Addr: c.addr, N: n})
			if len(o.Errors) > 0 || o.Replies[c.reply] != n {
				b.Fatalf("%s: replies %v errors %v; want %d %q", c.name, o.Replies, o.Errors, n, c.reply)
			}
			c.bpf = append(c.bpf, float64(progRuntime(b, r)-before)/float64(n))
			c.wall = append(c.wall, o.NsPerConn)
		}
	}
	for _, c := range cases {
		b.ReportMetric(median(c.wall), c.name+"-ns/connect")
		if c.cg != bare {
			b.ReportMetric(median(c.bpf), c.name+"-bpf-ns/connect")
		}
	}
}

func median(v []float64) float64 {
	slices.Sort(v)
	return v[len(v)/2]
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
			if err := r.objs.ConnOrigs.Put(&key, &orig); err != nil {
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
