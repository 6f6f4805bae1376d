package l7

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/egressd/egressd/internal/metric"
	"github.com/egressd/egressd/internal/metric/metrictest"
	"github.com/egressd/egressd/rules"
)

func TestMain(m *testing.M) {
	if os.Getenv(h2specAddrEnv) != "" {
		os.Exit(runH2SpecChild()) // TestH2Spec's child
	}
	goleak.VerifyTestMain(m)
}

// staticRules serves one compiled rule set.
type staticRules struct{ set *rules.Set }

func (s staticRules) Current() *rules.Set { return s.set }

func compileRules(t testing.TB, rs ...*rules.Rule) staticRules {
	t.Helper()
	set, err := rules.Compile(rs)
	if err != nil {
		t.Fatalf("compile rules: %v", err)
	}
	return staticRules{set}
}

// fixedOrig pretends every client connection was redirected from dst.
type fixedOrig struct{ dst netip.AddrPort }

func (f fixedOrig) Lookup(client, local netip.AddrPort) (netip.AddrPort, bool) {
	return f.dst, f.dst.IsValid()
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// env is a running proxy on loopback.
type env struct {
	t     testing.TB
	p     *Proxy
	addr  string // proxy listen address
	reg   *metric.Registry
	logs  *syncBuffer
	dials chan string // addresses the proxy dialed (test Dial)
}

// localDial is the test Config.Dial: every name resolves to 127.0.0.1, as
// a resolver for the test's names would answer; it records what it was asked.
func (e *env) localDial(ctx context.Context, network, addr string) (net.Conn, error) {
	select {
	case e.dials <- addr:
	default:
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
}

// testLoopback is the AllowUpstream of tests whose upstreams listen on the
// loopback.
var testLoopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// newEnv starts a proxy with cfg (Rules and OriginalDst must be set; Dial
// (unless Resolver is set), Logger and Metrics default to test versions; a
// nil AllowUpstream is testLoopback, give an empty one to test the address
// policy) and stops it on cleanup.
func newEnv(t testing.TB, cfg Config) *env {
	t.Helper()
	if cfg.AllowUpstream == nil {
		cfg.AllowUpstream = testLoopback
	}
	e := &env{t: t, reg: metric.NewRegistry(), logs: &syncBuffer{}, dials: make(chan string, 64)}
	if cfg.Dial == nil && cfg.Resolver == nil { // a test with a Resolver wants the default dialer
		cfg.Dial = e.localDial
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(e.logs, nil))
	}
	cfg.Metrics = e.reg
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.p, e.addr = p, ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- p.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrProxyClosed) {
			t.Errorf("Serve returned %v, want ErrProxyClosed", err)
		}
	})
	return e
}

// dial opens a raw client connection to the proxy.
func (e *env) dial() *rawClient {
	e.t.Helper()
	return e.dialFrom("")
}

// dialFrom opens a raw client connection to the proxy from source address
// src (any 127/8 address is the loopback's; "": the kernel's choice).
func (e *env) dialFrom(src string) *rawClient {
	e.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawClient{t: e.t, c: c, br: bufio.NewReader(c)}
}

// counter reads a counter from the proxy's registry.
func (e *env) counter(name string, labels ...string) float64 {
	e.t.Helper()
	mfs, err := metrictest.Gather(e.reg)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metric
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
		}
	}
	return 0
}

// rawClient speaks HTTP/1.1 by hand over one connection.
type rawClient struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func (rc *rawClient) send(s string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatalf("write: %v", err)
	}
}

// read reads one response (for method) with its body.
func (rc *rawClient) read(method string) (*http.Response, string) {
	rc.t.Helper()
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: method})
	if err != nil {
		rc.t.Fatalf("read response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		rc.t.Fatalf("read body: %v", err)
	}
	return resp, string(body)
}

// closed reports whether the proxy closed the connection (EOF or reset).
func (rc *rawClient) closed() bool {
	rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := rc.br.ReadByte()
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

// upstream is a real HTTP server recording what it received.
type upstream struct {
	srv  *http.Server
	ln   net.Listener
	port uint16
	reqs chan *seenRequest
}

type seenRequest struct {
	Method, Host, URI, Proto string
	Header                   http.Header
	Body                     string
	Trailer                  http.Header
	SNI                      string
}

func newUpstream(t testing.TB, h http.HandlerFunc) *upstream {
	t.Helper()
	return newUpstreamWith(t, h, nil)
}

// newUpstreamWith lets configure adjust the server before it serves.
func newUpstreamWith(t testing.TB, h http.HandlerFunc, configure func(*http.Server)) *upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{ln: ln, port: uint16(ln.Addr().(*net.TCPAddr).Port), reqs: make(chan *seenRequest, 100)}
	u.srv = &http.Server{Handler: u.record(h), ErrorLog: log.New(io.Discard, "", 0)}
	if configure != nil {
		configure(u.srv)
	}
	go u.srv.Serve(ln)
	t.Cleanup(func() { u.srv.Close() })
	return u
}

func (u *upstream) record(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s := &seenRequest{Method: r.Method, Host: r.Host, URI: r.RequestURI, Proto: r.Proto, Header: r.Header.Clone(), Body: string(body), Trailer: r.Trailer.Clone()}
		if r.TLS != nil {
			s.SNI = r.TLS.ServerName
		}
		u.reqs <- s
		if h != nil {
			h(w, r)
			return
		}
		fmt.Fprintf(w, "hello %s%s", r.Host, r.URL.Path)
	}
}

// next returns the next request the upstream received.
func (u *upstream) next(t testing.TB) *seenRequest {
	t.Helper()
	select {
	case r := <-u.reqs:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("upstream received nothing")
		return nil
	}
}

// none asserts the upstream received no request.
func (u *upstream) none(t testing.TB) {
	t.Helper()
	select {
	case r := <-u.reqs:
		t.Fatalf("upstream received %s %s (Host %s), want nothing", r.Method, r.URI, r.Host)
	default:
	}
}

func (u *upstream) orig() netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), u.port)
}

// httpRule allows service on port with protocol HTTP.
func httpRule(name, service string, port uint16) *rules.Rule {
	return &rules.Rule{Name: name, Service: service, Ports: []rules.Port{{Number: port, Protocol: rules.HTTP}}}
}

func mustContain(t testing.TB, got, want string) {
	t.Helper()
	if !strings.Contains(got, want) {
		t.Fatalf("got %q, want it to contain %q", got, want)
	}
}
