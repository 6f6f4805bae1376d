package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/kerneltest"
)

// TestE2EHandOver upgrades the agent under a client loop from the pod: a
// new connection per request, and two keep-alive connections, POSTs
// (never retried by the client once written), several per 10 ms. Started
// with the same flags:
//   - a new agent with invalid rules (exits 1 before touching anything),
//   - one that fails after it was given the listening sockets (a cgroup
//     that does not exist: the attach fails),
//   - one that takes over; then the first gets SIGTERM,
//   - and one more, with SIGTERM sent to the serving agent as soon as the
//     new one holds the sockets, before it is ready (the order of a
//     Kubernetes surge whose new pod looks ready early).
//
// No connect may be refused, no request fail, every request must be in
// exactly one agent's access log, and none may bypass the proxy.
func TestE2EHandOver(t *testing.T) {
	w := newWorld(t)
	port := freePort(t)
	admin := net.JoinHostPort("127.0.0.1", itoa(freePort(t)))
	args := agentArgs(w, port, admin)
	a := startEgressdIn(t, w.agentCgroup, w.agentWrap, admin, args...)
	agents := []*agent{a}
	loop := startLoop(t, w)
	loop.waitOK(t, 50)

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	writeFile(t, bad, "kind: EgressRule\nspec:\n  destination: {service: a.test}\n  ports: [{port: 70000, protocol: http}]\n")
	b := launchEgressd(t, w.agentCgroup, w.agentWrap, admin, replaceArg(args, "--rules", bad)...)
	if code := b.wait(t); code != 1 {
		t.Errorf("agent with invalid rules: exit %d, want 1\n%s", code, b.output())
	}
	loop.waitOK(t, 50)

	b = launchEgressd(t, w.agentCgroup, w.agentWrap, admin, replaceArg(args, "--cgroup", w.cgroup+"-none")...)
	if code := b.wait(t); code != 1 {
		t.Errorf("agent with a missing cgroup: exit %d, want 1\n%s", code, b.output())
	}
	if !strings.Contains(b.output(), "got the listening sockets") {
		t.Errorf("the failing agent was not handed the sockets:\n%s", b.output())
	}
	waitFor(t, "the serving agent carries on", func() bool { return strings.Contains(a.output(), "failed before it was ready; still serving") })
	loop.waitOK(t, 50)

	b = launchEgressd(t, w.agentCgroup, w.agentWrap, admin, args...)
	agents = append(agents, b)
	waitFor(t, "the new agent took over", func() bool { return strings.Contains(b.output(), "took over from the previous agent") })
	waitFor(t, "the old agent drained", func() bool { return strings.Contains(a.output(), "drained; waiting for SIGTERM") })
	loop.waitOK(t, 50)
	a.signal(syscall.SIGTERM)
	if code := a.wait(t); code != 0 {
		t.Errorf("old agent: exit %d, want 0\n%s", code, a.output())
	}
	loop.waitOK(t, 50)

	c := launchEgressd(t, w.agentCgroup, w.agentWrap, admin, args...)
	agents = append(agents, c)
	waitFor(t, "the next agent holds the sockets", func() bool { return strings.Contains(c.output(), "got the listening sockets") })
	b.signal(syscall.SIGTERM)
	if code := b.wait(t); code != 0 {
		t.Errorf("agent terminated during a hand-over: exit %d, want 0\n%s", code, b.output())
	}
	// Either SIGTERM came while c was taking over (b waited for it), or
	// after: b must have handed over, not closed its listener on its own.
	if !strings.Contains(b.output(), "the successor serves") || !strings.Contains(c.output(), "took over from the previous agent") {
		t.Errorf("SIGTERM during the hand-over did not wait for it:\n%s\n---\n%s", b.output(), c.output())
	}
	t.Logf("SIGTERM arrived while the successor was taking over: %v", strings.Contains(b.output(), "once the successor taking over is ready"))
	loop.waitOK(t, 50)
	if code, body := c.get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after the hand-overs: %d %s", code, body)
	}

	ok, failed := loop.stop(t)
	c.signal(syscall.SIGTERM)
	if code := c.wait(t); code != 0 {
		t.Errorf("last agent: exit %d\n%s", code, c.output())
	}
	for _, f := range failed {
		t.Errorf("request failed: %s", f)
	}
	checkAccounted(t, ok, agents)
	t.Logf("%d requests across 3 hand-overs and 2 failed starts, %d failed", len(ok), len(failed))
	assertNoBypass(t, w)
}

// replaceArg returns args with the value of flag replaced.
func replaceArg(args []string, flag, value string) []string {
	out := append([]string(nil), args...)
	for i := range out[:len(out)-1] {
		if out[i] == flag {
			out[i+1] = value
		}
	}
	return out
}

var accessHost = regexp.MustCompile(`host=(r\d+-\d+\.ho\.allowed\.test)`)

// checkAccounted: every request the client got an answer to is in exactly
// one agent's access log, and the logs hold no other.
func checkAccounted(t *testing.T, ok []string, agents []*agent) {
	t.Helper()
	logged := map[string]int{}
	for _, a := range agents {
		for _, m := range accessHost.FindAllStringSubmatch(a.output(), -1) {
			logged[m[1]]++
		}
	}
	for _, h := range ok {
		if n := logged[h]; n != 1 {
			t.Errorf("request %s in the access logs %d times, want once", h, n)
		}
		delete(logged, h)
	}
	for h, n := range logged {
		t.Errorf("access log has %s (%d times) the client got no answer for", h, n)
	}
}

// loop is the client loop helper running in the pod.
type loop struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	ok    []string
	fail  []string
	done  chan struct{}
}

// startLoop runs the test binary as the loop client in the pod namespace
// and test cgroup.
func startLoop(t *testing.T, w *world) *loop {
	t.Helper()
	l := &loop{done: make(chan struct{})}
	var out io.Reader
	l.cmd, l.stdin, out = startStreaming(t, w.cgroup, w.pod, "loop", net.JoinHostPort(decoy4.String(), itoa(portHTTP)))
	go func() {
		defer close(l.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			kind, rest, _ := strings.Cut(sc.Text(), " ")
			l.mu.Lock()
			if kind == "ok" {
				l.ok = append(l.ok, rest)
			} else {
				l.fail = append(l.fail, rest)
			}
			l.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.stdin.Close()
		l.cmd.Process.Kill() // by PID
		<-l.done
		l.cmd.Wait()
	})
	return l
}

// startStreaming starts the test binary as the client program name (see
// TestMain) in cgroup and ns, with args, and returns it started with its
// stdin (closing it ends the program) and stdout; its stderr is the test's.
func startStreaming(t *testing.T, cgroup string, ns *kerneltest.NS, name string, args ...string) (*exec.Cmd, io.WriteCloser, io.Reader) {
	t.Helper()
	cmd := kerneltest.Command(t, cgroup, ns, os.Args[0], args...)
	cmd.Env = append(os.Environ(), helperEnv+"="+name)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, stdin, out
}

// waitOK waits for n more answered requests.
func (l *loop) waitOK(t *testing.T, n int) {
	t.Helper()
	l.mu.Lock()
	want := len(l.ok) + n
	l.mu.Unlock()
	waitFor(t, fmt.Sprintf("%d requests answered", want), func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.ok) >= want
	})
}

// stop ends the loop and returns the answered requests' hosts and the
// failures.
func (l *loop) stop(t *testing.T) (ok, failed []string) {
	t.Helper()
	l.stdin.Close()
	select {
	case <-l.done:
	case <-time.After(20 * time.Second):
		t.Fatal("the client loop did not stop")
	}
	l.cmd.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok, l.fail
}

// loopClientMain is the client loop program: POSTs to target (the decoy
// address) with a new Host per request, from one goroutine opening a new
// connection per request and two on keep-alive connections, until stdin
// closes (at most 60 s, 10000 requests per goroutine). It prints "ok HOST"
// or "fail HOST ERROR" per request.
func loopClientMain(args []string) int {
	ctx, cancel, ok := loopContext(args, 60*time.Second)
	if !ok {
		return 2
	}
	defer cancel()
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g, keepAlive := range []bool{false, true, true} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := decoyTransport(args[0], keepAlive)
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			for n := 0; n < 10000 && ctx.Err() == nil; n++ {
				host := fmt.Sprintf("r%d-%d.ho.allowed.test", g, n)
				err := post(c, host)
				mu.Lock()
				if err != nil {
					fmt.Fprintf(out, "fail %s %v\n", host, err)
				} else {
					fmt.Fprintf(out, "ok %s\n", host)
				}
				out.Flush()
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	return 0
}

// loopContext checks a loop program's arguments (one: TARGET) and returns
// a context that ends when stdin closes, or after limit.
func loopContext(args []string, limit time.Duration) (context.Context, context.CancelFunc, bool) {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: TARGET")
		return nil, nil, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	go func() { io.Copy(io.Discard, os.Stdin); cancel() }()
	return ctx, cancel, true
}

// decoyTransport connects every request to target, whatever its URL.
func decoyTransport(target string, keepAlive bool) *http.Transport {
	return &http.Transport{DisableKeepAlives: !keepAlive,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, target)
		}}
}

// post sends a POST with Host host on c's connection to the target (one
// URL for all, so that the keep-alive client reuses its connection).
func post(c *http.Client, host string) error {
	req, err := http.NewRequest(http.MethodPost, "http://ho.allowed.test/", nil)
	if err != nil {
		return err
	}
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
