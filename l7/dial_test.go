package l7

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/egressd/egressd/l7/internal/client"
	"github.com/egressd/egressd/l7/internal/dialer"
)

// testDNS answers A queries under allowed.test with 127.0.0.1 and NXDOMAIN
// otherwise, recording the names asked.
type testDNS struct {
	addr string
	mu   sync.Mutex
	seen []string
}

func newTestDNS(t *testing.T) *testDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &testDNS{addr: pc.LocalAddr().String()}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		name := q.Question[0].Name
		d.mu.Lock()
		d.seen = append(d.seen, name)
		d.mu.Unlock()
		switch {
		case !strings.HasSuffix(name, ".allowed.test."):
			m.Rcode = dns.RcodeNameError
		case q.Question[0].Qtype == dns.TypeA:
			rr, _ := dns.NewRR(name + " 60 IN A 127.0.0.1")
			m.Answer = append(m.Answer, rr)
		}
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return d
}

func (d *testDNS) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var nd net.Dialer
		return nd.DialContext(ctx, "udp", d.addr)
	}}
}

func (d *testDNS) asked(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.seen {
		if s == name {
			return true
		}
	}
	return false
}

func TestResolveModeDialsWhatTheResolverSays(t *testing.T) {
	d := newTestDNS(t)
	u := newUpstream(t, nil)
	e := newEnv(t, Config{
		Rules:       compileRules(t, httpRule("wild", "*.allowed.test", u.port), httpRule("nxdomain", "gone.test", u.port)),
		OriginalDst: fixedOrig{u.orig()},
		Resolver:    d.resolver(),
		Dial:        nil, // New's default dialer, using Resolver
	})
	rc := e.dial()
	rc.send("GET /r HTTP/1.1\r\nHost: api.allowed.test\r\n\r\n")
	if resp, body := rc.read("GET"); resp.StatusCode != 200 {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if got := u.next(t); got.Host != "api.allowed.test" {
		t.Fatalf("upstream got Host %q", got.Host)
	}
	if !d.asked("api.allowed.test.") {
		t.Fatal("the configured resolver was not asked")
	}
	rc.send("GET / HTTP/1.1\r\nHost: gone.test\r\n\r\n")
	resp, body := rc.read("GET")
	if resp.StatusCode != 502 {
		t.Fatalf("unresolvable host: %d %q", resp.StatusCode, body)
	}
	mustContain(t, body, "resolving upstream failed")
	if n := e.counter("egressd_upstream_errors_total", "kind", "dns"); n != 1 {
		t.Errorf("dns error counter = %v", n)
	}
}

func TestDefaultDialerMarksUpstreamSockets(t *testing.T) {
	u := newUpstream(t, nil)
	const mark = 0x1e9
	p, err := New(Config{
		Rules:         compileRules(t, httpRule("wild", "*.allowed.test", u.port)),
		OriginalDst:   fixedOrig{u.orig()},
		DialMode:      DialOriginal,
		Resolver:      newTestDNS(t).resolver(), // --dial=original checks the name's addresses
		Mark:          mark,
		AllowUpstream: testLoopback,
	})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := p.decide(new(client.Entry), "api.allowed.test", u.port)
	nc, err := p.dialer.Upstream(context.Background(), m, "api.allowed.test", u.orig())
	if errors.Is(err, syscall.EPERM) {
		t.Skip("setting SO_MARK needs CAP_NET_ADMIN")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	rc, _ := nc.(syscall.Conn).SyscallConn()
	var got int
	rc.Control(func(fd uintptr) { got, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK) })
	if err != nil || got != mark {
		t.Fatalf("SO_MARK = %#x, %v; want %#x", got, err, mark)
	}
	d, err := dialer.New(dialer.Config{Control: MarkControl(mark)})
	if err != nil {
		t.Fatal(err)
	}
	if r := d.Resolver(); r == net.DefaultResolver || r.Dial == nil {
		t.Error("the default resolver's sockets are not marked")
	}
}

func TestOriginalModeDialsTheOriginalDestination(t *testing.T) {
	u := newUpstream(t, nil)
	e := newEnv(t, Config{
		Rules:       compileRules(t, httpRule("wild", "*.allowed.test", u.port)),
		OriginalDst: fixedOrig{u.orig()},
		DialMode:    DialOriginal,
		Resolver:    newTestDNS(t).resolver(), // --dial=original checks the name's addresses
	})
	rc := e.dial()
	rc.send("GET / HTTP/1.1\r\nHost: api.allowed.test\r\n\r\n")
	if resp, _ := rc.read("GET"); resp.StatusCode != 200 {
		t.Fatalf("got %d", resp.StatusCode)
	}
	if got := u.next(t); got.Host != "api.allowed.test" { // only the original destination has this upstream
		t.Fatalf("upstream got Host %q", got.Host)
	}
}

// TestOriginalModeChecksTheOriginalDestination: with --dial=original, an
// allowed Host (the same check covers a passthrough SNI) does not carry a request to an address the app chose
// that the name does not resolve to.
func TestOriginalModeChecksTheOriginalDestination(t *testing.T) {
	ls := newLocalService(t, "127.0.0.2") // the app's choice; api.allowed.test resolves to 127.0.0.1
	z := newZoneDNS(t, map[string][]netip.Addr{"api.allowed.test.": {netip.MustParseAddr("127.0.0.1")}})
	for _, orig := range []string{"127.0.0.2", "0.0.0.0"} {
		t.Run(orig, func(t *testing.T) {
			e := newEnv(t, Config{
				Rules:       compileRules(t, httpRule("r", "api.allowed.test", ls.port)),
				OriginalDst: fixedOrig{netip.AddrPortFrom(netip.MustParseAddr(orig), ls.port)},
				DialMode:    DialOriginal,
				Resolver:    z.resolver(),
			})
			status, body := e.get("api.allowed.test")
			if status != 403 {
				t.Fatalf("got %d %q, want 403", status, body)
			}
			mustContain(t, body, "egressd: upstream address "+orig+" of api.allowed.test refused: the original destination is not an address of api.allowed.test")
			if n := e.counter("egressd_upstream_addresses_refused_total", "reason", "not_original"); n != 1 {
				t.Errorf("refused counter = %v", n)
			}
			if n := ls.accepted.Load(); n != 0 {
				t.Fatalf("the app's chosen address accepted %d connection(s)", n)
			}
		})
	}
}
