package redirect

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/egressd/egressd/internal/kerneltest"
	"github.com/egressd/egressd/internal/upstream"
)

// privileges a pod's process may have: none, and root with the one
// capability container runtimes grant that matters here.
var privileges = []struct {
	name string
	wrap []string
}{
	{"uid 1000 no caps", []string{"setpriv", "--reuid", "1000", "--regid", "1000", "--clear-groups",
		"--bounding-set", "-all", "--inh-caps", "-all", "--"}},
	{"uid 0 CAP_NET_RAW", []string{"setpriv", "--bounding-set", "-all,+net_raw", "--inh-caps", "-all", "--"}},
}

// TestBypass tries every way out of an attached cgroup from a pod's
// network namespace and asserts at the external namespace, which records
// every frame it receives, that nothing arrived; the controls show the
// same sends do arrive where they are allowed (or from outside the
// cgroup), so the recorder and the privileges are real.
func TestBypass(t *testing.T) {
	tp := newTopo(t)
	opts := tp.options()
	opts.AllowUDP = []UDPRule{{Port: 5353}}
	tp.attach(t, opts)
	routeAround(t, tp)
	startProxy(t, tp.ext, "direct", "[::]:53") // TCP DNS on every external address
	// A service on the node address, on a port that is not the proxy's.
	ln, err := net.Listen("tcp", netip.AddrPortFrom(nodeAddr4, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	nodeSvc, nodeAccepted := ln.Addr().String(), upstream.CountAccepts(ln)
	if err := tp.pod.Do(func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ping_group_range", []byte("0 2147483647"), 0o644)
	}); err != nil {
		t.Fatal(err)
	}
	rec := sniff(t, tp.ext)
	other4 := func(port uint16) string { return hostPort(otherAddr4, port) }
	other6 := func(port uint16) string { return hostPort(otherAddr6, port) }

	for _, priv := range privileges {
		t.Run(priv.name, func(t *testing.T) {
			tag := strings.ReplaceAll(priv.name, " ", "-")
			var markers []string
			mark := func(what string) string {
				m := fmt.Sprintf("BYPASS-%s-%s", tag, what)
				markers = append(markers, m)
				return m
			}
			run := func(cg string, j job) outcome {
				j.N = 1
				return runChild(t, cg, tp.pod, j, priv.wrap...)
			}
			for _, tc := range []struct {
				name string
				j    job
				want string // a reply, or an errno; "": any failure
			}{
				{"TCP/53 not a DNS server", job{Network: "tcp4", Addr: other4(53)}, "orig " + other4(53)},
				{"TCP/53 not a DNS server ipv6", job{Network: "tcp6", Addr: other6(53)}, "orig " + other6(53)},
				{"UDP/53 not a DNS server", job{Network: "udp4", Addr: other4(53)}, "EPERM"},
				{"UDP/53 not a DNS server unconnected ipv6", job{Network: "udp6", Addr: other6(53), Unconn: true}, "EPERM"},
				{"UDP 51820", job{Network: "udp4", Addr: other4(51820)}, "EPERM"},
				{"UDP 51820 unconnected ipv6", job{Network: "udp6", Addr: other6(51820), Unconn: true}, "EPERM"},
				{"ICMP echo", job{Socket: "ping4", Addr: other4(0), Unconn: true}, "EPERM"},
				{"ICMPv6 echo", job{Socket: "ping6", Addr: other6(0), Unconn: true}, "EPERM"},
				{"UDP-Lite connected", job{Socket: "udplite4", Addr: other4(443)}, "EPERM"},
				{"UDP-Lite unconnected", job{Socket: "udplite4", Addr: other4(51820), Unconn: true}, "EPERM"},
				{"UDP-Lite ipv6", job{Socket: "udplite6", Addr: other6(5353)}, "EPERM"},
				{"raw", job{Socket: "raw4", Addr: other4(51820)}, "EPERM"},
				{"UDP connected to the DNS server, then sendto another", job{Socket: "udp4-connected-sendto", Addr: hostPort(extAddr4, 53), Then: other4(51820)}, "EPERM"},
				{"UDP IPv6 socket, sendto an AF_INET address", job{Socket: "udp6-inet", Addr: other4(51820)}, "EPERM"},
				{"UDP IPv6 socket, sendto v4-mapped", job{Socket: "udp6-mapped", Addr: other4(51820)}, "EPERM"},
				{"UDP IPv6 socket, sendto v4-mapped port 53 not a DNS server", job{Socket: "udp6-mapped", Addr: other4(53)}, "EPERM"},
				{"SCTP", job{Socket: "sctp4", Addr: other4(9)}, ""},
				// Setting the mark needs CAP_NET_RAW (or NET_ADMIN); with it the
				// connect is redirected all the same.
				{"SO_MARK of egressd", job{Network: "tcp4", Addr: other4(tp.extPort), Mark: 0x30e5}, "orig " + other4(tp.extPort) + "|EPERM"},
				{"node address, not the proxy port", job{Network: "tcp4", Addr: nodeSvc}, "orig " + nodeSvc},
				{"0.0.0.0", job{Network: "tcp4", Addr: hostPort(netip.IPv4Unspecified(), tp.extPort)}, "EPERM"},
				{"::", job{Network: "tcp6", Addr: hostPort(netip.IPv6Unspecified(), tp.extPort)}, "EPERM"},
				{"::ffff:0.0.0.0", job{Network: "tcp6-mapped", Addr: hostPort(netip.IPv4Unspecified(), tp.extPort)}, "EPERM"},
			} {
				tc.j.Payload = "GET /" + mark(strings.ReplaceAll(tc.name, " ", "_")) + " HTTP/1.0\r\n\r\n"
				o := run(tp.cg, tc.j)
				if !outcomeIs(o, tc.want) {
					t.Errorf("%s: replies %v errors %v; want %s", tc.name, o.Replies, o.Errors, cmpOr(tc.want, "a failure"))
				}
			}

			// Controls, in the cgroup: DNS to the server, UDP and TCP;
			// the allowed UDP port.
			for _, c := range []struct {
				name string
				j    job
				want string
			}{
				{"DNS server UDP", job{Network: "udp4", Addr: hostPort(extAddr4, 53)}, "echo 53"},
				{"DNS server UDP unconnected ipv6", job{Network: "udp6", Addr: hostPort(extAddr6, 53), Unconn: true}, "echo 53"},
				{"DNS server TCP", job{Network: "tcp4", Addr: hostPort(extAddr4, 53)}, "direct"},
				{"allowed UDP port", job{Network: "udp4", Addr: other4(5353)}, "echo 5353"},
			} {
				c.j.Payload = "CONTROL-" + tag + "-" + strings.ReplaceAll(c.name, " ", "_")
				if o := run(tp.cg, c.j); !outcomeIs(o, c.want) {
					t.Errorf("control %s: replies %v errors %v; want %s", c.name, o.Replies, o.Errors, c.want)
				} else if strings.HasPrefix(c.j.Network, "udp") && !rec.await(c.j.Payload) {
					t.Errorf("control %s: answered, but the recorder never saw it", c.name)
				}
			}
			// Controls outside the cgroup, same privileges: these sockets
			// work there, so it is the programs that refuse them above.
			outside := []job{{Socket: "ping4", Addr: other4(0), Unconn: true}, {Socket: "udplite4", Addr: other4(51820), Unconn: true},
				{Socket: "udp4-connected-sendto", Addr: hostPort(extAddr4, 53), Then: other4(51820)},
				{Socket: "udp6-inet", Addr: other4(51820)}, {Socket: "udp6-mapped", Addr: other4(51820)}}
			if strings.Contains(priv.name, "NET_RAW") {
				outside = append(outside, job{Socket: "raw4", Addr: other4(51820)})
			}
			for _, j := range outside {
				j.Payload = "CONTROL-" + tag + "-outside-" + j.Socket
				if o := run("", j); !outcomeIs(o, "sent") || !rec.await(j.Payload) {
					t.Errorf("control %s outside the cgroup: replies %v errors %v, recorded %v; want sent and recorded",
						j.Socket, o.Replies, o.Errors, rec.seen(j.Payload))
				}
			}
			// The controls were sent after the attempts, on the same path:
			// had an attempt left, it would be recorded by now.
			for _, m := range markers {
				if rec.seen(m) {
					t.Errorf("%s reached the external namespace", m)
				}
			}
		})
	}
	if n := nodeAccepted.Load(); n != 0 {
		t.Errorf("the node's service on %v accepted %d connections from the pod, want 0", nodeSvc, n)
	}
}

// routeAround links the pod straight to the external namespace, its
// routes to the external addresses through that link: what the programs
// let out of the pod arrives there, without the host forwarding. It
// returns the pod's end of the link.
func routeAround(t *testing.T, tp *topo) (podIf string) {
	t.Helper()
	p := netip.MustParsePrefix
	podIf, _ = kerneltest.Veth(t, tp.pod, []netip.Prefix{p("198.18.33.1/24"), p("2001:2:0:11:1::1/80")},
		tp.ext, []netip.Prefix{p("198.18.33.2/24"), p("2001:2:0:11:1::2/80")})
	gw4, gw6 := netip.MustParseAddr("198.18.33.2"), netip.MustParseAddr("2001:2:0:11:1::2")
	for _, r := range []struct {
		dst netip.Prefix
		gw  netip.Addr
	}{{p("198.18.0.0/24"), gw4}, {p("198.18.32.0/24"), gw4}, {p("2001:2::/64"), gw6}, {p("2001:2:0:11::/64"), gw6}} {
		if err := tp.pod.RouteAdd(r.dst, podIf, r.gw); err != nil {
			t.Fatal(err)
		}
	}
	return podIf
}

// outcomeIs says whether every connection of o ended as want: a reply, an
// errno, alternatives separated by |, or "" for any error.
func outcomeIs(o outcome, want string) bool {
	if want == "" {
		return len(o.Replies) == 0 && len(o.Errors) > 0
	}
	n := 0
	for _, w := range strings.Split(want, "|") {
		n += o.Replies[w] + o.Errors[w]
	}
	return n > 0 && n == sum(o.Replies)+sum(o.Errors)
}

func sum(m map[string]int) (n int) {
	for _, v := range m {
		n += v
	}
	return n
}
