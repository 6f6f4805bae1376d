package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/kerneltest"
)

// The pod's own link to the external namespace (issue 23's range): what
// the programs let out of the pod goes there, from podDirect4, without the
// host forwarding.
var (
	podDirect4 = netip.MustParseAddr("198.19.44.2")
	extDirect4 = netip.MustParseAddr("198.19.44.1")
)

// TestE2EExemptCgroup exempts a cgroup while a client in it loops, and
// takes the exemption away again, by agent hand-overs with and without
// --exempt-cgroup (the way a plain host changes the flag): before, the
// client's requests are redirected (a denied host gets 403, an allowed
// one reaches the upstream from egressd, never from the pod's address);
// while exempt, both reach the upstream directly, from the pod's address;
// after, redirected again. A sibling cgroup, never exempted, is redirected
// throughout. An exempt cgroup that holds the attached one is refused at
// start (exit 1) and the serving agent carries on.
func TestE2EExemptCgroup(t *testing.T) {
	w := newWorld(t)
	p := netip.MustParsePrefix
	podIf, _ := kerneltest.Veth(t, w.pod, []netip.Prefix{netip.PrefixFrom(podDirect4, 24)},
		w.ext, []netip.Prefix{netip.PrefixFrom(extDirect4, 24)})
	if err := w.pod.RouteAdd(p("198.19.5.0/24"), podIf, extDirect4); err != nil {
		t.Fatal(err)
	}
	exempt, governed := filepath.Join(w.cgroup, "exempt"), filepath.Join(w.cgroup, "governed")
	for _, d := range []string{exempt, governed} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	port := freePort(t)
	admin := net.JoinHostPort("127.0.0.1", itoa(freePort(t)))
	args := agentArgs(w, port, admin)
	a := startEgressdIn(t, w.agentCgroup, w.agentWrap, admin, args...)
	ex, gov := startExemptLoop(t, w, exempt), startExemptLoop(t, w, governed)
	ex.expect(t, "before", redirected, 20)
	gov.expect(t, "before", redirected, 10)
	if n := w.rec.CountFrom(podDirect4); n != 0 {
		t.Fatalf("before the exemption %d request(s) reached the upstream from the pod's address", n)
	}

	bad := launchEgressd(t, w.agentCgroup, w.agentWrap, admin, append(args, "--exempt-cgroup", w.cgroup)...)
	if code := bad.wait(t); code != 1 || !strings.Contains(bad.output(), "holds the attached cgroup") {
		t.Errorf("agent exempting the attached cgroup: exit %d, want 1 and why\n%s", code, bad.output())
	}
	ex.expect(t, "after the refused start", redirected, 10)

	b := handOver(t, w, a, admin, append(args, "--exempt-cgroup", exempt))
	if !strings.Contains(b.output(), "cgroup exempt: not redirected") {
		t.Errorf("no log line for the exempt cgroup:\n%s", b.output())
	}
	ex.expect(t, "exempt", direct, 20)
	gov.expect(t, "while the sibling is exempt", redirected, 10)
	waitFor(t, `egressd_exempt_cgroups{reason="flag"} 1 and skipped_exempt >= 20 while exempt`, func() bool {
		_, m := b.get("/metrics")
		return metric(m, `egressd_exempt_cgroups{reason="flag"}`) == 1 && metric(m, `egressd_redirect_events_total{event="skipped_exempt"}`) >= 20
	})

	c := handOver(t, w, b, admin, args)
	if !strings.Contains(c.output(), "cgroup no longer exempt") {
		t.Errorf("no log line for the end of the exemption:\n%s", c.output())
	}
	before := w.rec.CountFrom(podDirect4)
	ex.expect(t, "after", redirected, 20)
	gov.expect(t, "after", redirected, 10)
	if n := w.rec.CountFrom(podDirect4) - before; n != 0 {
		t.Errorf("after the exemption %d request(s) reached the upstream from the pod's address", n)
	}
	if n := w.rec.CountFrom(podDirect4); n != ex.directSeen {
		t.Errorf("the upstream saw %d requests from the pod's address, the client %d direct answers", n, ex.directSeen)
	}
	// Polled: under emulation one scrape may outlast the client's timeout.
	waitFor(t, `egressd_exempt_cgroups{reason="flag"} 0 after`, func() bool {
		_, m := c.get("/metrics")
		return metric(m, `egressd_exempt_cgroups{reason="flag"}`) == 0
	})
	ex.stop(t)
	gov.stop(t)
	if gov.directSeen != 0 {
		t.Errorf("the never exempted cgroup had %d direct answers", gov.directSeen)
	}
}

// handOver starts an agent with args next to the serving one, waits for
// the take-over and stops the old one.
func handOver(t *testing.T, w *world, old *agent, admin string, args []string) *agent {
	t.Helper()
	n := launchEgressd(t, w.agentCgroup, w.agentWrap, admin, args...)
	waitFor(t, "the new agent took over", func() bool { return strings.Contains(n.output(), "took over from the previous agent") })
	waitFor(t, "the old agent drained", func() bool { return strings.Contains(old.output(), "drained; waiting for SIGTERM") })
	old.signal(syscall.SIGTERM)
	if code := old.wait(t); code != 0 {
		t.Errorf("old agent: exit %d\n%s", code, old.output())
	}
	return n
}

// A way an exempt-loop answer came: through egressd or around it.
type path int

const (
	redirected path = iota // allowed: from egressd to the real address; denied: 403
	direct                 // both from the pod's address to the decoy address
	neither
)

// exemptResult is one exempt-loop request.
type exemptResult struct {
	denied      bool // the host is not in the rules
	code        int  // 0: failed
	local, peer string
	line        string
}

func (r exemptResult) path() path {
	switch {
	case r.code == 200 && r.local == decoy4.String() && r.peer == podDirect4.String():
		return direct
	case r.denied && r.code == 403:
		return redirected
	case !r.denied && r.code == 200 && (r.local == real4.String() || r.local == real6.String()) &&
		r.peer != podDirect4.String() && r.peer != "198.19.6.2" && r.peer != "2001:2:0:e6::2":
		return redirected
	}
	return neither
}

type exemptLoop struct {
	name       string
	cmd        *exec.Cmd
	stdin      io.WriteCloser
	results    chan exemptResult
	directSeen int
}

// startExemptLoop runs the exempt-loop client in cgroup, in the pod.
func startExemptLoop(t *testing.T, w *world, cgroup string) *exemptLoop {
	t.Helper()
	l := &exemptLoop{name: filepath.Base(cgroup), results: make(chan exemptResult, 1024)}
	var out io.Reader
	l.cmd, l.stdin, out = startStreaming(t, cgroup, w.pod, "exemptloop", net.JoinHostPort(decoy4.String(), itoa(portHTTP)))
	go func() {
		defer close(l.results)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var r exemptResult
			var kind string
			fmt.Sscanf(sc.Text(), "%s %d %s %s", &kind, &r.code, &r.local, &r.peer)
			r.denied, r.line = kind == "denied", sc.Text()
			l.results <- r
		}
	}()
	t.Cleanup(func() {
		l.stdin.Close()
		l.cmd.Process.Kill() // by PID
		l.cmd.Wait()
	})
	return l
}

// expect reads answers until want has come (answers of the other path
// before it are the switch in progress), then requires n more, all of
// want, half of them for denied hosts. A failed request fails the test.
func (l *exemptLoop) expect(t *testing.T, phase string, want path, n int) {
	t.Helper()
	deadline := time.After(kerneltest.Scale(20 * time.Second))
	got, switching := 0, true
	for got < n {
		var r exemptResult
		select {
		case r = <-l.results:
		case <-deadline:
			t.Fatalf("%s, %s: %d of %d answers of the path wanted after 20 s", l.name, phase, got, n)
		}
		p := r.path()
		if p == direct {
			l.directSeen++
		}
		switch {
		case p == neither:
			t.Fatalf("%s, %s: unexpected answer %q", l.name, phase, r.line)
		case p == want:
			switching = false
			got++
		case !switching:
			t.Fatalf("%s, %s: %q after %d answers of the wanted path", l.name, phase, r.line, got)
		}
	}
}

func (l *exemptLoop) stop(t *testing.T) {
	t.Helper()
	l.stdin.Close()
	for r := range l.results {
		if r.path() == direct {
			l.directSeen++
		}
	}
	l.cmd.Wait()
}

// exemptLoopMain is the exempt-loop client: GETs to target (the decoy
// address) on a new connection each, alternately for an allowed and a
// denied host, until stdin closes (at most 120 s). It prints one line per
// request: "allowed|denied CODE LOCAL PEER", with the upstream's local and
// peer addresses from the Echo body ("-" when absent), CODE 0 when the
// request failed.
func exemptLoopMain(args []string) int {
	ctx, cancel, ok := loopContext(args, 120*time.Second)
	if !ok {
		return 2
	}
	defer cancel()
	c := &http.Client{Transport: decoyTransport(args[0], false), Timeout: 10 * time.Second}
	out := bufio.NewWriter(os.Stdout)
	for n := 0; ctx.Err() == nil; n++ {
		kind, host := "allowed", fmt.Sprintf("x%d.allowed.test", n)
		if n%2 == 1 {
			kind, host = "denied", fmt.Sprintf("x%d.denied.test", n)
		}
		code, local, peer := 0, "-", "-"
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/", nil)
		if resp, err := c.Do(req); err == nil {
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				code = resp.StatusCode
			}
			for _, line := range strings.Split(string(body), "\n") {
				if v, ok := strings.CutPrefix(line, "local: "); ok {
					local = v
				}
				if v, ok := strings.CutPrefix(line, "peer: "); ok {
					peer = v
				}
			}
		} else if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(out, "%s %d %s %s\n", kind, code, local, peer)
		out.Flush()
		time.Sleep(5 * time.Millisecond)
	}
	return 0
}
