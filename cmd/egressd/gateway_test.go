package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/freeport"
	"github.com/egressd/egressd/l7"
	"github.com/egressd/egressd/rules"
)

func TestParseGatewayFlags(t *testing.T) {
	cfg, err := parseGatewayFlags([]string{"--rules", "r.yaml"}, env("EGRESSD_LISTEN", "127.0.0.1:9", "EGRESSD_DNS", "10.0.0.10"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:9" || cfg.Admin != defaultGatewayAdmin || cfg.DNS != "10.0.0.10:53" || cfg.LogFormat != "text" {
		t.Fatalf("got %+v", cfg)
	}
	for _, args := range [][]string{{}, {"--rules", "r", "--listen", "nope"}, {"--rules", "r", "--log-format", "xml"}, {"--rules", "r", "extra"}, {"--rules", "r", "--tls-cert", "c.pem"}} {
		_, err := parseGatewayFlags(args, env(), io.Discard)
		if code := exitCode(err, io.Discard); code != exitUsage {
			t.Errorf("%q: exit %d, want %d (%v)", args, code, exitUsage, err)
		}
	}
}

func TestGatewayStartFailures(t *testing.T) {
	rulesDir := writeRules(t, map[string]string{"good.yaml": goodRule})
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing TLS files", []string{"--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"}, "gateway: tls:"},
		{"invalid rules", []string{"--rules", writeRules(t, map[string]string{"bad.yaml": badRule})}, "has a '*' in the middle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"gateway", "--rules", rulesDir, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"}, tc.args...)
			err := dispatch(context.Background(), args, io.Discard, io.Discard)
			if code := exitCode(err, io.Discard); code != exitFailure || !strings.Contains(fmt.Sprint(err), tc.want) {
				t.Fatalf("exit %d, error %v; want %d and %q", code, err, exitFailure, tc.want)
			}
		})
	}
}

// gatewayBinary is a running `egressd gateway` built from this package.
type gatewayBinary struct {
	cmd         *exec.Cmd
	addr, admin string
	logs, rules string
	exited      chan error
	logsDone    chan struct{} // closed once the process's output is all in logs
}

func startGatewayBinary(t *testing.T, rulesYAML string) *gatewayBinary {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "egressd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	g := &gatewayBinary{addr: freeAddr(t), admin: freeAddr(t), logs: filepath.Join(dir, "log"),
		rules: filepath.Join(dir, "rules.yaml"), exited: make(chan error, 1)}
	if err := os.WriteFile(g.rules, []byte(rulesYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(g.logs)
	if err != nil {
		t.Fatal(err)
	}
	// The output goes to logs through a pipe, read line by line: the test
	// waits for the start-up line, which comes once the proxy listens.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	g.cmd = exec.Command(bin, "gateway", "--rules", g.rules, "--listen", g.addr, "--admin", g.admin, "--log-format", "json")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "EGRESSD_") {
			g.cmd.Env = append(g.cmd.Env, kv)
		}
	}
	g.cmd.Stdout, g.cmd.Stderr = pw, pw
	err = g.cmd.Start()
	pw.Close() // the child holds its own copy
	if err != nil {
		pr.Close()
		logf.Close()
		t.Fatal(err)
	}
	running := make(chan struct{})
	g.logsDone = make(chan struct{})
	go func() {
		defer close(g.logsDone)
		defer logf.Close()
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		sc.Buffer(nil, 1<<20)
		started := running
		for sc.Scan() {
			logf.Write(append(sc.Bytes(), '\n'))
			if started != nil && strings.Contains(sc.Text(), "egressd gateway running") {
				close(started)
				started = nil
			}
		}
	}()
	go func() { g.exited <- g.cmd.Wait() }()
	t.Cleanup(func() {
		g.cmd.Process.Kill()
		<-g.exited
		<-g.logsDone
	})
	select {
	case <-running:
		return g
	case err := <-g.exited:
		g.exited <- err // for the cleanup
		<-g.logsDone
		b, _ := os.ReadFile(g.logs)
		t.Fatalf("gateway exited before listening on %s: %v\n%s", g.addr, err, b)
	case <-time.After(10 * time.Second):
		b, _ := os.ReadFile(g.logs)
		t.Fatalf("gateway not listening on %s after 10s: %s", g.addr, b)
	}
	return nil
}

// freeAddr is a loopback address for a server this test starts as a process.
func freeAddr(t *testing.T) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(freeport.TCP(t)))
}

// curlVia runs curl through the gateway (tunnel: CONNECT first) and
// returns the status of the CONNECT (0 without) and of the request.
func (g *gatewayBinary) curlVia(t *testing.T, url string, tunnel bool) (connect, status int) {
	t.Helper()
	bin, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed (apt-get install curl)")
	}
	args := []string{"-s", "-o", "/dev/null", "-x", "http://client:secret@" + g.addr, "-w", "%{http_connect} %{http_code}", url}
	if tunnel {
		args = append(args, "--proxytunnel")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, args...).Output()
	fmt.Sscan(string(out), &connect, &status)
	return connect, status
}

func TestGatewayBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	seen := make(chan *http.Request, 16)
	wsEnded := make(chan struct{})
	svc := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" { // a websocket-style upgrade: 101, then wait for the end
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
			brw.Flush()
			io.Copy(io.Discard, brw)
			c.Close()
			close(wsEnded)
			return
		}
		seen <- r.Clone(context.Background())
		fmt.Fprint(w, "service")
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go svc.Serve(ln)
	defer svc.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	rule := func(service string) string {
		return fmt.Sprintf("kind: EgressRule\nmetadata: {name: local}\nspec:\n  destination: {service: %s}\n"+
			"  ports: [{port: %d, protocol: HTTP}]\n  useEgressProxy: true\n", service, port)
	}
	// The rule names the loopback IP literally, which lets the upstream
	// address policy through (a name resolving there would be refused).
	g := startGatewayBinary(t, rule("127.0.0.1"))
	url := fmt.Sprintf("http://127.0.0.1:%d/x", port)

	if _, status := g.curlVia(t, url, false); status != 200 {
		t.Fatalf("absolute form: %d", status)
	}
	if r := <-seen; r.URL.Path != "/x" || r.Header.Get("Proxy-Authorization") != "" {
		t.Fatalf("service saw %s with Proxy-Authorization %q", r.URL.Path, r.Header.Get("Proxy-Authorization"))
	}
	if connect, status := g.curlVia(t, url, true); connect != 200 || status != 200 {
		t.Fatalf("CONNECT tunnel: %d %d", connect, status)
	}
	<-seen
	sidecarThrough(t, g, fmt.Sprintf("GET /chained HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", port), port)
	if r := <-seen; r.URL.Path != "/chained" {
		t.Fatalf("service saw %s", r.URL.Path)
	}
	if _, status := g.curlVia(t, "http://evil.test/", false); status != 403 {
		t.Fatalf("absolute form to a denied host: %d", status)
	}
	if connect, _ := g.curlVia(t, fmt.Sprintf("http://evil.test:%d/", port), true); connect != 403 {
		t.Fatalf("CONNECT to a denied host: %d", connect)
	}
	_, metrics := get(t, "http://"+g.admin+"/metrics")
	for _, want := range []string{
		`egressd_requests_total{decision="deny",namespace="",protocol="connect",rule=""} 1`,
		`egressd_requests_total{decision="allow",namespace="",protocol="connect",rule="local"} 1`,
		// absolute form, the request inside the tunnel (decided on its own), the sidecar's
		`egressd_requests_total{decision="allow",namespace="",protocol="http/1.1",rule="local"} 3`,
		`egressd_rules{namespace=""} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// A websocket through the gateway, which the new rules end.
	ws, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(ws, "GET http://127.0.0.1:%d/ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", port, port)
	wsr := bufio.NewReader(ws)
	if resp, err := http.ReadResponse(wsr, nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade through the gateway: %v %v", resp, err)
	}

	// A new rule version applies on SIGHUP (or by the watcher): 127.0.0.1 is no longer allowed.
	if err := os.WriteFile(g.rules, []byte(rule("other.test")), 0o644); err != nil {
		t.Fatal(err)
	}
	g.cmd.Process.Signal(syscall.SIGHUP)
	// The reload closes the websocket, at the client and at the service:
	// once it is closed, the new rules are in force.
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := wsr.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("websocket still open after the reload: %v", err)
	}
	if _, status := g.curlVia(t, url, false); status != 403 {
		t.Fatalf("after the reload: %d, want 403 (the new rules did not apply)", status)
	}
	select {
	case <-wsEnded:
	case <-time.After(5 * time.Second):
		t.Fatal("the service's side of the websocket still open after the reload")
	}
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-g.exited:
		g.exited <- err // for the cleanup
		if err != nil {
			t.Fatalf("after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("gateway did not stop on SIGTERM")
	}
	<-g.logsDone
	logs, _ := os.ReadFile(g.logs)
	if !strings.Contains(string(logs), `"protocol":"connect"`) || !strings.Contains(string(logs), `"decision":"deny"`) {
		t.Errorf("access log lacks the CONNECT entries:\n%s", logs)
	}
	if !strings.Contains(string(logs), "closed by egressd: no egress rule allows 127.0.0.1 on port") {
		t.Errorf("log lacks why the websocket was closed:\n%s", logs)
	}
}

// redirectedFrom is an l7.OriginalDst for which every connection was
// redirected from dst.
type redirectedFrom netip.AddrPort

func (r redirectedFrom) Lookup(_, _ netip.AddrPort) (netip.AddrPort, bool) {
	return netip.AddrPort(r), true
}

// sidecarThrough runs an in-process agent proxy with the gateway's own rule
// file (useEgressProxy) and --egress-proxy pointing at the gateway, sends
// req to it as if redirected from 127.0.0.1:port, and wants a 200.
func sidecarThrough(t *testing.T, g *gatewayBinary, req string, port int) {
	t.Helper()
	reloader, err := rules.NewReloader([]string{g.rules}, rules.ReloaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	orig := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	p, err := l7.New(l7.Config{Rules: reloader, OriginalDst: redirectedFrom(orig),
		EgressProxy: &url.URL{Scheme: "http", Host: g.addr, User: url.UserPassword("agent", "secret")}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- p.Serve(ln) }()
	defer func() {
		p.Shutdown(context.Background())
		<-served
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, req)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("agent through the gateway binary: %s", resp.Status)
	}
}
