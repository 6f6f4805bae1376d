package l7

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/internal/kerneltest"
	"github.com/egressd/egressd/rules"
)

// zoneDNS is a real DNS server on the loopback answering A and AAAA for the
// names in zone (absolute, lower case) and NXDOMAIN for the rest; it
// records every question.
type zoneDNS struct {
	addr string
	zone map[string][]netip.Addr
	mu   sync.Mutex
	seen []string
}

func newZoneDNS(t *testing.T, zone map[string][]netip.Addr) *zoneDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	z := &zoneDNS{addr: pc.LocalAddr().String(), zone: zone}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(z.serve)}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return z
}

func (z *zoneDNS) serve(w dns.ResponseWriter, q *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(q)
	name := strings.ToLower(q.Question[0].Name)
	z.mu.Lock()
	z.seen = append(z.seen, name)
	z.mu.Unlock()
	addrs, ok := z.zone[name]
	if !ok {
		m.Rcode = dns.RcodeNameError
	}
	hdr := dns.RR_Header{Name: q.Question[0].Name, Class: dns.ClassINET, Ttl: 5}
	for _, a := range addrs {
		switch {
		case q.Question[0].Qtype == dns.TypeA && a.Is4():
			h := hdr
			h.Rrtype = dns.TypeA
			m.Answer = append(m.Answer, &dns.A{Hdr: h, A: a.AsSlice()})
		case q.Question[0].Qtype == dns.TypeAAAA && a.Is6():
			h := hdr
			h.Rrtype = dns.TypeAAAA
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: h, AAAA: a.AsSlice()})
		}
	}
	w.WriteMsg(m)
}

func (z *zoneDNS) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", z.addr)
	}}
}

func (z *zoneDNS) questions() []string {
	z.mu.Lock()
	defer z.mu.Unlock()
	return append([]string(nil), z.seen...)
}

// localService stands in for a node-only service: an HTTP server on addr
// (a loopback address) that counts every connection it accepts.
type localService struct {
	port     uint16
	accepted atomic.Int64
}

func newLocalService(t *testing.T, addr string) *localService {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	ls := &localService{port: uint16(ln.Addr().(*net.TCPAddr).Port)}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("node secret"))
	}), ConnState: func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			ls.accepted.Add(1)
		}
	}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ls
}

// testDst is where the tests' apps pretend to have connected: an address
// of this helper's range that is never dialled in DialResolve mode.
var testDst = netip.MustParseAddr("198.18.48.1")

// policyEnv is a proxy with New's own dialer resolving through z, with
// allow as AllowUpstream (nil: none).
func policyEnv(t *testing.T, z *zoneDNS, allow []netip.Prefix, rs ...*rules.Rule) *env {
	t.Helper()
	port := rs[0].Ports[0].Number
	if allow == nil {
		allow = []netip.Prefix{}
	}
	return newEnv(t, Config{
		Rules:         compileRules(t, rs...),
		OriginalDst:   fixedOrig{netip.AddrPortFrom(testDst, port)},
		Resolver:      z.resolver(),
		AllowUpstream: allow,
	})
}

func (e *env) get(host string) (int, string) {
	e.t.Helper()
	rc := e.dial()
	rc.send("GET / HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n")
	resp, body := rc.read("GET")
	return resp.StatusCode, body
}

func TestAddressPolicyRefusesLocalAddresses(t *testing.T) {
	for _, tc := range []struct {
		name, listen, host, rule, wantAddr, wantCode string
	}{
		{"dns answer 127.0.0.1 under a prefix wildcard", "127.0.0.1", "api.evil.test", "api.*", "127.0.0.1", "loopback"},
		{"dns answer ::1", "::1", "api6.evil.test", "api6.*", "::1", "loopback"},
		{"dns answer 0.0.0.0 (reaches the node's wildcard listeners)", "127.0.0.1", "zero.evil.test", "*.evil.test", "0.0.0.0", "unspecified"},
		{"Host 127.0.0.1 under *", "127.0.0.1", "127.0.0.1", "*", "127.0.0.1", "loopback"},
		{"Host [::1] under *", "::1", "[::1]", "*", "::1", "loopback"},
		{"Host localhost under * (a DNS that answers it)", "127.0.0.1", "localhost", "*", "127.0.0.1", "loopback"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ls := newLocalService(t, tc.listen)
			z := newZoneDNS(t, map[string][]netip.Addr{
				"api.evil.test.":  {netip.MustParseAddr("127.0.0.1")},
				"api6.evil.test.": {netip.MustParseAddr("::1")},
				"zero.evil.test.": {netip.MustParseAddr("0.0.0.0")},
				"localhost.":      {netip.MustParseAddr("127.0.0.1")},
			})
			e := policyEnv(t, z, nil, httpRule("r", tc.rule, ls.port))
			status, body := e.get(net.JoinHostPort(strings.Trim(tc.host, "[]"), strconv.Itoa(int(ls.port))))
			if status != 403 {
				t.Fatalf("got %d %q, want 403", status, body)
			}
			mustContain(t, body, "egressd: upstream address "+tc.wantAddr)
			mustContain(t, body, "of "+strings.Trim(tc.host, "[]")+" refused: ")
			if n := ls.accepted.Load(); n != 0 {
				t.Fatalf("the local service accepted %d connection(s)", n)
			}
			if n := e.counter("egressd_upstream_addresses_refused_total", "reason", tc.wantCode); n < 1 {
				t.Errorf("refused counter{reason=%s} = %v", tc.wantCode, n)
			}
			mustContain(t, e.logs.String(), `"msg":"upstream address refused"`)
		})
	}
}

func TestAddressPolicyAllowances(t *testing.T) {
	ls := newLocalService(t, "127.0.0.1")
	z := newZoneDNS(t, map[string][]netip.Addr{"api.evil.test.": {netip.MustParseAddr("127.0.0.1")}})
	t.Run("operator range", func(t *testing.T) {
		e := policyEnv(t, z, []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, httpRule("r", "api.*", ls.port))
		if status, body := e.get("api.evil.test"); status != 200 || body != "node secret" {
			t.Fatalf("got %d %q, want the local service's 200", status, body)
		}
	})
	t.Run("a rule naming the IP", func(t *testing.T) {
		e := policyEnv(t, z, nil, httpRule("r", "127.0.0.1", ls.port))
		if status, body := e.get("127.0.0.1"); status != 200 || body != "node secret" {
			t.Fatalf("got %d %q, want the local service's 200", status, body)
		}
		// The literal rule does not make the name that resolves there allowed.
		e2 := policyEnv(t, z, nil, httpRule("r", "127.0.0.1", ls.port), httpRule("w", "api.*", ls.port))
		if status, _ := e2.get("api.evil.test"); status != 403 {
			t.Fatalf("api.evil.test got %d, want 403", status)
		}
	})
	if n := ls.accepted.Load(); n != 2 {
		t.Fatalf("the local service accepted %d connections, want the 2 allowed ones", n)
	}
}

func TestAddressPolicyNodeAddress(t *testing.T) {
	// The node's address list is a stand-in: 198.18.48.2 is declared the
	// node's, so the refusal happens before any packet is sent.
	node := netip.MustParseAddr("198.18.48.2")
	z := newZoneDNS(t, map[string][]netip.Addr{"api.evil.test.": {node}})
	e := policyEnv(t, z, nil, httpRule("r", "api.*", 8080))
	e.p.dialer.Policy().NodeAddrs = func() ([]netip.Addr, error) { return []netip.Addr{node}, nil }
	status, body := e.get("api.evil.test")
	if status != 403 {
		t.Fatalf("got %d %q", status, body)
	}
	mustContain(t, body, "egressd: upstream address 198.18.48.2 of api.evil.test refused: an address of this node")
}

// TestAddressPolicyMetadataAndNAT64: names whose DNS answer is a cloud
// metadata service outside link-local, or loopback, link-local or the
// node's own address behind the NAT64 prefix, are refused before connect:
// the dialer's Control (which would run right before connect(2), and here
// fails the dial so that no packet can leave) never sees them. A plain
// address behind the NAT64 prefix still gets to Control.
func TestAddressPolicyMetadataAndNAT64(t *testing.T) {
	node := netip.MustParseAddr("198.18.48.2")
	zone := map[string][]netip.Addr{
		"aws6.evil.test.":    {netip.MustParseAddr("fd00:ec2::254")},
		"gce6.evil.test.":    {netip.MustParseAddr("fd20:ce::254")},
		"aliyun.evil.test.":  {netip.MustParseAddr("100.100.100.200")},
		"nat64lo.evil.test.": {netip.MustParseAddr("64:ff9b::127.0.0.1")},
		"nat64md.evil.test.": {netip.MustParseAddr("64:ff9b::169.254.169.254")},
		"nat64nd.evil.test.": {netip.MustParseAddr("64:ff9b::198.18.48.2")},
		"plain.evil.test.":   {netip.MustParseAddr("64:ff9b::198.18.48.9")},
	}
	z := newZoneDNS(t, zone)
	var mu sync.Mutex
	var connects []string
	e := newEnv(t, Config{
		Rules:         compileRules(t, httpRule("r", "*.evil.test", 8080)),
		OriginalDst:   fixedOrig{netip.AddrPortFrom(testDst, 8080)},
		Resolver:      z.resolver(),
		AllowUpstream: []netip.Prefix{},
		Control: func(_, address string, _ syscall.RawConn) error {
			mu.Lock()
			connects = append(connects, address)
			mu.Unlock()
			return errors.New("test: no connect")
		},
	})
	e.p.dialer.Policy().NodeAddrs = func() ([]netip.Addr, error) { return []netip.Addr{node}, nil }
	for _, tc := range []struct{ host, addr, code string }{
		{"aws6.evil.test", "fd00:ec2::254", "metadata"},
		{"gce6.evil.test", "fd20:ce::254", "metadata"},
		{"aliyun.evil.test", "100.100.100.200", "metadata"},
		{"nat64lo.evil.test", "64:ff9b::7f00:1", "loopback"},
		{"nat64md.evil.test", "64:ff9b::a9fe:a9fe", "link_local"},
		{"nat64nd.evil.test", "64:ff9b::c612:3002", "node_address"},
	} {
		status, body := e.get(tc.host)
		if status != 403 {
			t.Errorf("%s: got %d %q, want 403", tc.host, status, body)
			continue
		}
		mustContain(t, body, "egressd: upstream address "+tc.addr+" of "+tc.host+" refused: ")
		if n := e.counter("egressd_upstream_addresses_refused_total", "reason", tc.code); n < 1 {
			t.Errorf("%s: refused counter{reason=%s} = %v", tc.host, tc.code, n)
		}
	}
	mu.Lock()
	if len(connects) != 0 {
		t.Errorf("connect(2) was about to be called for %q", connects)
	}
	mu.Unlock()
	// The control: an ordinary address behind the prefix is dialled.
	if status, _ := e.get("plain.evil.test"); status == 200 || status == 403 {
		t.Errorf("plain.evil.test got %d, want the dial's failure", status)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(connects) == 0 || connects[0] != "[64:ff9b::c612:3009]:8080" {
		t.Errorf("connects %q, want [64:ff9b::c612:3009]:8080", connects)
	}
}

// TestUpstreamNamesAreAbsolute runs itself again in a mount namespace of
// its own whose /etc/resolv.conf has a pod's search list and ndots:5, as
// in the DaemonSet: the upstream name must be asked as it is, and only it.
func TestUpstreamNamesAreAbsolute(t *testing.T) {
	if os.Getenv("EGRESSD_TEST_POD_RESOLV_CONF") == "" {
		kerneltest.Require(t)
		conf := filepath.Join(t.TempDir(), "resolv.conf")
		err := os.WriteFile(conf, []byte("nameserver 127.0.0.1\nsearch egressd-system.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"), 0o644)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
			`mount --bind "$1" /etc/resolv.conf && shift && exec "$@"`, "sh", conf,
			os.Args[0], "-test.run=^TestUpstreamNamesAreAbsolute$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "EGRESSD_TEST_POD_RESOLV_CONF=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestUpstreamNamesAreAbsolute") {
			t.Fatalf("in a mount namespace with a pod's resolv.conf: %v\n%s", err, out)
		}
		return
	}
	ls := newLocalService(t, "127.0.0.1")
	z := newZoneDNS(t, map[string][]netip.Addr{"api.allowed.test.": {netip.MustParseAddr("127.0.0.1")}})
	e := policyEnv(t, z, testLoopback, httpRule("r", "api.allowed.test", ls.port))
	if status, body := e.get("api.allowed.test"); status != 200 {
		t.Fatalf("got %d %q", status, body)
	}
	qs := z.questions()
	if len(qs) == 0 {
		t.Fatal("the resolver asked nothing")
	}
	for _, q := range qs {
		if q != "api.allowed.test." {
			t.Errorf("the resolver asked %q (all: %q): only the absolute name may be asked", q, qs)
		}
	}
}
