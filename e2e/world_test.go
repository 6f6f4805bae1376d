package e2e

import (
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/egressd/egressd/internal/kerneltest"
	"github.com/egressd/egressd/internal/upstream"
)

// Addresses of the topology. Clients connect to the decoy addresses; DNS
// resolves every name to the real ones, which egressd dials.
var (
	decoy4 = netip.MustParseAddr("198.19.5.10")
	decoy6 = netip.MustParseAddr("2001:2:0:e5::10")
	real4  = netip.MustParseAddr("198.19.5.11")
	real6  = netip.MustParseAddr("2001:2:0:e5::11")
	dns4   = netip.MustParseAddr("198.19.5.53")
	node4  = netip.MustParseAddr("198.19.6.1") // the host's end of the pod veth
	node6  = netip.MustParseAddr("2001:2:0:e6::1")
)

// Ports of the upstream services (those of the test's rules).
const (
	portHTTP  = 80
	portTLS   = 443
	portH2C   = 8080
	portGRPC  = 50051
	rulesYAML = `kind: EgressRule
metadata: {name: allowed-wildcard}
spec:
  destination: {service: "*.allowed.test"}
  ports: [{port: 80, protocol: http}]
---
kind: EgressRule
metadata: {name: exact}
spec:
  destination: {service: exact.whitelisted.test}
  ports:
    - {port: 80, protocol: http}
    - {port: 8080, protocol: http2}
---
kind: EgressRule
metadata: {name: tls-origination}
spec:
  destination: {service: tls.whitelisted.test}
  ports: [{port: 443, protocol: https}]
---
kind: EgressRule
metadata: {name: grpc}
spec:
  destination: {service: grpc.whitelisted.test}
  ports: [{port: 50051, protocol: grpc}]
`
)

// world is the topology of one test: the external namespace with its
// services, a pod namespace, a test cgroup, and the files egressd reads.
type world struct {
	ext, pod  *kerneltest.NS
	cgroup    string
	rec       *upstream.Recorder
	rulesFile string
	caFile    string
	pinDir    string
	// agentCgroup is where startAgent puts egressd ("": outside the test
	// cgroup, as on a plain host).
	agentCgroup string
	// agentWrap is a command startAgent runs egressd through (nil: none).
	agentWrap []string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	kerneltest.Require(t)
	w := &world{rec: &upstream.Recorder{}, cgroup: kerneltest.Cgroup(t), ext: kerneltest.Netns(t), pod: kerneltest.Netns(t)}
	p := netip.MustParsePrefix
	_, extIf := kerneltest.Veth(t, nil, []netip.Prefix{p("198.19.5.1/24"), p("2001:2:0:e5::1/64")},
		w.ext, []netip.Prefix{p("198.19.5.2/24"), p("2001:2:0:e5::2/64")})
	for _, a := range []netip.Addr{decoy4, real4, dns4, decoy6, real6} {
		bits := 24
		if a.Is6() {
			bits = 64
		}
		if err := w.ext.AddrAdd(extIf, netip.PrefixFrom(a, bits)); err != nil {
			t.Fatal(err)
		}
	}
	_, podIf := kerneltest.Veth(t, nil, []netip.Prefix{p("198.19.6.1/24"), p("2001:2:0:e6::1/64")},
		w.pod, []netip.Prefix{p("198.19.6.2/24"), p("2001:2:0:e6::2/64")})
	for _, r := range []struct {
		dst netip.Prefix
		gw  netip.Addr
	}{{p("0.0.0.0/0"), node4}, {p("::/0"), node6}} {
		if err := w.pod.RouteAdd(r.dst, podIf, r.gw); err != nil {
			t.Fatal(err)
		}
	}

	ca, err := upstream.NewCA("tls.whitelisted.test", "*.whitelisted.test")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	w.caFile = filepath.Join(dir, "ca.pem")
	w.rulesFile = filepath.Join(dir, "rules.yaml")
	writeFile(t, w.caFile, string(ca.PEM))
	writeFile(t, w.rulesFile, rulesYAML)
	w.pinDir = pinDir(t)

	err = w.ext.Do(func() error {
		lns := map[int]net.Listener{}
		for _, port := range []int{portHTTP, portTLS, portH2C, portGRPC, 53} {
			ln, err := net.Listen("tcp", net.JoinHostPort("::", itoa(port)))
			if err != nil {
				return err
			}
			lns[port] = ln
		}
		pc, err := net.ListenPacket("udp", net.JoinHostPort(dns4.String(), "53"))
		if err != nil {
			return err
		}
		for _, srv := range []*http.Server{
			upstream.Serve(lns[portHTTP], upstream.Echo(w.rec), false, nil),
			upstream.Serve(lns[portTLS], upstream.Echo(w.rec), false, &ca.Cert),
			upstream.Serve(lns[portH2C], upstream.Echo(w.rec), true, nil),
		} {
			t.Cleanup(func() { srv.Close() })
		}
		serveGRPC(t, lns[portGRPC])
		t.Cleanup(upstream.ServeDNS(pc, lns[53], upstream.DNS{V4: real4, V6: real6}))
		return nil
	})
	if err != nil {
		t.Fatalf("external services: %v", err)
	}
	return w
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	// Write aside and rename, as editors and kubelet do: the agent never
	// reads a half-written file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
