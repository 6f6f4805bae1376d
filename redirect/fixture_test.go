package redirect

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/egressd/egressd/internal/kerneltest"
	"github.com/egressd/egressd/internal/mounts"
)

// Addresses of the test topology: the "external" namespace (ext) holds
// the real destinations; the "pod" namespace reaches the host through a
// veth whose host side is the node address.
var (
	extAddr4      = netip.MustParseAddr("198.18.0.2")
	extAddr6      = netip.MustParseAddr("2001:2::2")
	excludedAddr4 = netip.MustParseAddr("198.18.1.2")
	excludedAddr6 = netip.MustParseAddr("2001:2:0:1::2")
	excluded      = []netip.Prefix{netip.MustParsePrefix("198.18.1.0/24"), netip.MustParsePrefix("2001:2:0:1::/64")}
	// otherAddr4/6 is an external address that is neither excluded nor a
	// DNS server (extAddr4/6 are the DNS servers).
	otherAddr4 = netip.MustParseAddr("198.18.32.2")
	otherAddr6 = netip.MustParseAddr("2001:2:0:11::2")
	dnsServers = []netip.Prefix{netip.PrefixFrom(extAddr4, 32), netip.PrefixFrom(extAddr6, 128)}
	nodeAddr4  = netip.MustParseAddr("198.19.1.1")
	nodeAddr6  = netip.MustParseAddr("2001:2:0:191::1")
)

// topo is a throwaway world for one test: a cgroup, the ext and pod
// namespaces, a proxy that answers each accepted connection with what
// Lookup said, and servers in ext that answer "direct".
type topo struct {
	cg       string
	ext, pod *kerneltest.NS
	pinDir   string
	proxy    *proxy
	extPort  uint16 // TCP port served in ext; UDP echo on 53, 443, 5353, 51820
	loopback netip.AddrPort
}

func newTopo(t testing.TB) *topo {
	t.Helper()
	kerneltest.Require(t)
	tp := &topo{cg: kerneltest.Cgroup(t), ext: kerneltest.Netns(t), pod: kerneltest.Netns(t), pinDir: testPinDir(t)}
	p := netip.MustParsePrefix
	kerneltest.Veth(t, nil, []netip.Prefix{p("198.18.0.1/24"), p("198.18.1.1/24"), p("198.18.32.1/24"),
		p("2001:2::1/64"), p("2001:2:0:1::1/64"), p("2001:2:0:11::1/64")},
		tp.ext, []netip.Prefix{p("198.18.0.2/24"), p("198.18.1.2/24"), p("198.18.32.2/24"),
			p("2001:2::2/64"), p("2001:2:0:1::2/64"), p("2001:2:0:11::2/64")})
	_, podIf := kerneltest.Veth(t, nil, []netip.Prefix{p("198.19.1.1/24"), p("2001:2:0:191::1/64")},
		tp.pod, []netip.Prefix{p("198.19.1.2/24"), p("2001:2:0:191::2/64")})
	for _, r := range []struct {
		dst netip.Prefix
		gw  netip.Addr
	}{{p("0.0.0.0/0"), nodeAddr4}, {p("::/0"), nodeAddr6}} {
		if err := tp.pod.RouteAdd(r.dst, podIf, r.gw); err != nil {
			t.Fatal(err)
		}
	}
	tp.proxy = startProxy(t, nil, "proxy", "[::]:0")
	tp.extPort = startProxy(t, tp.ext, "direct", "[::]:0").port()
	tp.loopback = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), startProxy(t, nil, "loopback", "127.0.0.1:0").port())
	for _, port := range []int{53, 443, 5353, 51820} {
		for _, a := range []netip.Addr{extAddr4, excludedAddr4, otherAddr4, extAddr6, excludedAddr6, otherAddr6} {
			startUDPEcho(t, tp.ext, netip.AddrPortFrom(a, uint16(port)))
		}
	}
	return tp
}

// options are the Options for the topology; change fields as needed.
func (tp *topo) options() Options {
	return Options{
		Cgroups:      []string{tp.cg},
		ProxyPort:    tp.proxy.port(),
		NodeAddrs:    []netip.Addr{nodeAddr4, nodeAddr6},
		ExcludeCIDRs: excluded,
		DNSServers:   dnsServers,
		PinDir:       tp.pinDir,
	}
}

func (tp *topo) attach(t testing.TB, opts Options) *Redirector {
	t.Helper()
	r, err := Attach(opts)
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	tp.proxy.use(r)
	return r
}

// testPinDir returns a fresh pin directory on bpffs, uninstalled on
// cleanup.
func testPinDir(t testing.TB) string {
	fs, err := mounts.Find("bpf")
	if err != nil {
		if err := mountBPFFS(defaultBPFFS); err != nil {
			t.Fatal(err)
		}
		fs = defaultBPFFS
	}
	dir := filepath.Join(fs, fmt.Sprintf("egressd-test-%d-%s", os.Getpid(), filepath.Base(t.Name())))
	t.Cleanup(func() {
		if err := Uninstall(dir); err != nil {
			t.Errorf("uninstall: %v", err)
		}
	})
	return dir
}

// proxy accepts connections and answers each with one line: "orig ADDR"
// when the Redirector in use knows the connection, "miss" when it does
// not, its name without a Redirector (a plain server).
type proxy struct {
	name string
	ln   net.Listener
	mu   sync.RWMutex // held for writing while the Redirector is swapped
	r    *Redirector

	cgMu    sync.Mutex
	cgroups map[uint64]int // connections found, by the cgroup ID recorded
}

// cgroupIDs returns how many connections were found, by recorded cgroup ID.
func (p *proxy) cgroupIDs() map[uint64]int {
	p.cgMu.Lock()
	defer p.cgMu.Unlock()
	return maps.Clone(p.cgroups)
}

func startProxy(t testing.TB, ns *kerneltest.NS, name, addr string) *proxy {
	t.Helper()
	p := &proxy{name: name, cgroups: map[uint64]int{}}
	err := ns.Do(func() (err error) {
		p.ln, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.ln.Close() })
	go p.serve()
	return p
}

func (p *proxy) port() uint16 { return uint16(p.ln.Addr().(*net.TCPAddr).Port) }

// use switches the Redirector used for lookups; no lookup is in flight
// on the old one when use returns.
func (p *proxy) use(r *Redirector) {
	p.mu.Lock()
	p.r = r
	p.mu.Unlock()
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		client := c.RemoteAddr().(*net.TCPAddr).AddrPort()
		local := c.LocalAddr().(*net.TCPAddr).AddrPort()
		p.mu.RLock()
		reply := p.name
		if p.r != nil {
			reply = "miss"
			if o, err := p.r.Origin(client, local); err == nil {
				reply = "orig " + o.Dst.String()
				p.cgMu.Lock()
				p.cgroups[o.CgroupID]++
				p.cgMu.Unlock()
			}
		}
		p.mu.RUnlock()
		go func() {
			fmt.Fprintln(c, reply)
			c.Close()
		}()
	}
}

// startUDPEcho answers every datagram to at in ns with "echo PORT", from
// at (a connected client accepts no other source).
func startUDPEcho(t testing.TB, ns *kerneltest.NS, at netip.AddrPort) {
	t.Helper()
	port := at.Port()
	var pc net.PacketConn
	err := ns.Do(func() (err error) {
		pc, err = net.ListenPacket("udp", at.String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(fmt.Sprintf("echo %d\n", port)), from)
		}
	}()
}
