package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/kerneltest"
)

// at is curl's --resolve for name:port to addr: curl sends Host: name and
// connects to addr, where the BPF hook takes over.
func at(name string, port int, addr netip.Addr) []string {
	return []string{"--resolve", name + ":" + itoa(port) + ":" + bracket(addr), "http://" + name + ":" + itoa(port) + "/"}
}

func bracket(a netip.Addr) string {
	if a.Is6() {
		return "[" + a.String() + "]"
	}
	return a.String()
}

func TestE2E(t *testing.T) {
	w := newWorld(t)
	a := startAgent(t, w, 0)

	for _, side := range []struct {
		name string
		ns   *kerneltest.NS
	}{{"host", nil}, {"pod", w.pod}} {
		t.Run(side.name, func(t *testing.T) {
			for _, tc := range []struct {
				name   string
				args   []string
				code   int
				fields map[string]string
			}{
				{"allowed wildcard", at("a.allowed.test", portHTTP, decoy4), 200,
					map[string]string{"host": "a.allowed.test", "tls": "false"}},
				{"wildcard spans labels", at("x.y.allowed.test", portHTTP, decoy4), 200, map[string]string{"host": "x.y.allowed.test"}},
				{"exact", at("exact.whitelisted.test", portHTTP, decoy4), 200, nil},
				{"denied host", at("denied.test", portHTTP, decoy4), 403, nil},
				{"denied port", at("a.allowed.test", portH2C, decoy4), 403, nil},
				{"wildcard needs a label", at("allowed.test", portHTTP, decoy4), 403, nil},
				{"HTTPS port upgraded to TLS", at("tls.whitelisted.test", portTLS, decoy4), 200,
					map[string]string{"tls": "true", "sni": "tls.whitelisted.test"}},
				{"h2c", append([]string{"--http2-prior-knowledge"}, at("exact.whitelisted.test", portH2C, decoy4)...), 200,
					map[string]string{"proto": "HTTP/2.0"}},
				{"IPv6 allowed", at("a.allowed.test", portHTTP, decoy6), 200, map[string]string{"host": "a.allowed.test"}},
				{"IPv6 denied", at("denied.test", portHTTP, decoy6), 403, nil},
			} {
				t.Run(tc.name, func(t *testing.T) {
					r := curl(t, w, side.ns, tc.args...)
					if r.code != tc.code {
						t.Fatalf("status %d, want %d\n%s%s", r.code, tc.code, r.body, r.err)
					}
					// egressd dialed the name it resolved, not the decoy the app chose.
					if l := r.field("local"); r.code == 200 && r.field("proto") != "" && l != real4.String() && l != real6.String() {
						t.Errorf("upstream reached at %s, want the resolved %v or %v", l, real4, real6)
					}
					for k, v := range tc.fields {
						if got := r.field(k); got != v {
							t.Errorf("upstream saw %s %q, want %q\n%s", k, got, v, r.body)
						}
					}
				})
			}
			t.Run("gRPC allowed", func(t *testing.T) {
				if got := grpcCall(t, w, side.ns, bracket(decoy4)+":50051", "grpc.whitelisted.test:50051"); got != "OK" {
					t.Errorf("gRPC unary + bidi: %s", got)
				}
			})
			t.Run("gRPC denied", func(t *testing.T) {
				if got := grpcCall(t, w, side.ns, bracket(decoy4)+":50051", "denied.test:50051"); got != "PermissionDenied" {
					t.Errorf("gRPC to a denied authority: %s, want PermissionDenied", got)
				}
			})
		})
	}
	assertNoBypass(t, w)

	t.Run("admin", func(t *testing.T) {
		if code, _ := a.get("/healthz"); code != 200 {
			t.Errorf("/healthz: %d", code)
		}
		if code, _ := a.get("/readyz"); code != 200 {
			t.Errorf("/readyz: %d", code)
		}
		_, m := a.get("/metrics")
		if n := metric(m, `egressd_redirect_events_total{event="redirected"}`); n < 20 {
			t.Errorf("redirected connects: %v, want >= 20", n)
		}
		if n := metric(m, `egressd_requests_total{decision="allow",protocol="http/1.1",rule="allowed-wildcard"}`); n < 4 {
			t.Errorf("allowed requests of rule allowed-wildcard: %v\n%s", n, grep(m, "egressd_requests_total"))
		}
		if n := metric(m, `egressd_rules`); n != 4 {
			t.Errorf("egressd_rules %v, want 4", n)
		}
		for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "egressd_request_duration_seconds_bucket"} {
			if !strings.Contains(m, name) {
				t.Errorf("/metrics lacks %s", name)
			}
		}
	})

	t.Run("rules change picked up", func(t *testing.T) {
		newRule := "---\nkind: EgressRule\nmetadata: {name: added}\nspec:\n  destination: {service: new.test}\n  ports: [{port: 80, protocol: http}]\n"
		writeFile(t, w.rulesFile, rulesYAML+newRule)
		waitStatus(t, w, at("new.test", portHTTP, decoy4), 200)

		// A broken version is refused; the last good rules keep serving.
		writeFile(t, w.rulesFile, rulesYAML+newRule+"---\nkind: EgressRule\nspec:\n  destination: {service: broken.test}\n  ports: [{port: 99999, protocol: http}]\n")
		waitFor(t, "the broken version refused", func() bool {
			_, m := a.get("/metrics")
			return metric(m, `egressd_rules_reloads_total{result="refused"}`) >= 1
		})
		if r := curl(t, w, nil, at("new.test", portHTTP, decoy4)...); r.code != 200 {
			t.Errorf("after a refused reload new.test got %d, want 200 (old rules in force)", r.code)
		}
		if !strings.Contains(a.output(), "rules.yaml:") {
			t.Errorf("the refused version's problems are not logged with file:line:\n%s", a.output())
		}

		// SIGHUP reloads too: back to the original rules.
		writeFile(t, w.rulesFile, rulesYAML)
		a.signal(syscall.SIGHUP)
		waitStatus(t, w, at("new.test", portHTTP, decoy4), 403)
	})
	assertNoBypass(t, w)

	a.signal(syscall.SIGTERM)
	if code := a.wait(t); code != 0 {
		t.Errorf("exit code after SIGTERM: %d\n%s", code, a.output())
	}
}

// TestE2EShutdownDrains: on SIGTERM requests in flight finish, new
// connections are refused (not let through), /readyz turns 503, exit 0.
func TestE2EShutdownDrains(t *testing.T) {
	w := newWorld(t)
	a := startAgent(t, w, 0)
	const n = 5
	codes := make(chan int, n)
	for range n {
		go func() {
			r := curl(t, w, nil, "--resolve", "slow.allowed.test:80:"+decoy4.String(), "http://slow.allowed.test/slow?ms=2000")
			codes <- r.code
		}()
	}
	waitFor(t, "requests in flight at the upstream", func() bool { return w.rec.Count(real4)+w.rec.Count(real6) >= n })
	a.signal(syscall.SIGTERM)
	waitFor(t, "/readyz 503 while draining", func() bool { code, _ := a.get("/readyz"); return code == 503 })
	// The listener closes right after /readyz turns: from then on a new
	// connect is refused (the programs stay attached), never let through.
	waitFor(t, "new connects refused while draining", func() bool {
		return curl(t, w, nil, at("a.allowed.test", portHTTP, decoy4)...).code == 0
	})
	for range n {
		if code := <-codes; code != 200 {
			t.Errorf("a request in flight at SIGTERM got %d, want 200", code)
		}
	}
	if code := a.wait(t); code != 0 {
		t.Errorf("exit code %d, want 0\n%s", code, a.output())
	}
	assertNoBypass(t, w)
}

// TestE2ERestartNoBypass kills the agent (SIGKILL, no cleanup) while a
// client keeps sending, and starts a new one on the same pins: during the
// gap connections are refused, and no request reaches the upstream without
// going through egressd.
func TestE2ERestartNoBypass(t *testing.T) {
	w := newWorld(t)
	port := freePort(t)
	a := startAgent(t, w, port)

	var mu sync.Mutex
	counts := map[int]int{}
	stop := make(chan struct{})
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		for i := 0; i < 2000; i++ { // bounded: about 10 ms per curl
			select {
			case <-stop:
				return
			default:
			}
			r := curl(t, w, nil, "--max-time", "3", "--resolve", "loop.allowed.test:80:"+decoy4.String(), "http://loop.allowed.test/")
			mu.Lock()
			counts[r.code]++
			mu.Unlock()
		}
	}()
	ok := func() int { mu.Lock(); defer mu.Unlock(); return counts[200] }
	waitFor(t, "requests through the first agent", func() bool { return ok() >= 10 })

	a.signal(syscall.SIGKILL)
	a.wait(t)
	time.Sleep(300 * time.Millisecond) // a visible gap
	before := ok()
	b := startAgent(t, w, port)
	waitFor(t, "requests through the second agent", func() bool { return ok() >= before+10 })
	close(stop)
	<-loopDone

	mu.Lock()
	t.Logf("client results by status (0: connection refused): %v", counts)
	for code := range counts {
		if code != 200 && code != 0 {
			t.Errorf("status %d seen during the restart", code)
		}
	}
	mu.Unlock()
	assertNoBypass(t, w)
	if !strings.Contains(b.output(), "egressd running") {
		t.Errorf("second agent did not start:\n%s", b.output())
	}
	b.signal(syscall.SIGTERM)
	if code := b.wait(t); code != 0 {
		t.Errorf("exit code %d\n%s", code, b.output())
	}
}

// TestRunRefusesInvalidRules needs no kernel: egressd run stops before
// touching it, with every problem, and exit code 1; usage errors exit 2.
func TestRunRefusesInvalidRules(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	writeFile(t, bad, "kind: EgressRule\nspec:\n  destination: {service: a.test}\n  ports:\n    - {port: 70000, protocol: http}\n    - {port: 80, protocol: gopher}\n")
	out, err := exec.Command(egressdBinary(t), "run", "--rules", bad, "--cgroup", "/nonexistent", "--admin", "127.0.0.1:0").CombinedOutput()
	if code := exitCode(err); code != 1 {
		t.Errorf("exit code %d, want 1\n%s", code, out)
	}
	if got := strings.Count(string(out), "bad.yaml:"); got < 2 {
		t.Errorf("want both problems with file:line, got:\n%s", out)
	}
	out, err = exec.Command(egressdBinary(t), "run", "--rules", bad, "--cgroup", "/x", "--dial", "sideways").CombinedOutput()
	if code := exitCode(err); code != 2 {
		t.Errorf("bad --dial: exit code %d, want 2\n%s", code, out)
	}
	cmd := exec.Command(egressdBinary(t), "run", "--rules", bad, "--cgroup", "/x")
	cmd.Env = append(cmd.Environ(), "EGRESSD_PROXY_PORT=not-a-port")
	out, err = cmd.CombinedOutput()
	if code := exitCode(err); code != 2 || !strings.Contains(string(out), "EGRESSD_PROXY_PORT") {
		t.Errorf("bad EGRESSD_PROXY_PORT: exit code %d, want 2\n%s", code, out)
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// assertNoBypass fails if any request reached an upstream on a decoy
// address: only a connection that went around egressd lands there.
func assertNoBypass(t *testing.T, w *world) {
	t.Helper()
	for _, d := range []netip.Addr{decoy4, decoy6} {
		if n := w.rec.Count(d); n != 0 {
			t.Errorf("%d request(s) reached the upstream at %v without egressd", n, d)
		}
	}
}

// waitStatus polls (at most 10 s) until a request gets the status code.
func waitStatus(t *testing.T, w *world, args []string, code int) {
	t.Helper()
	var last response
	waitFor(t, "status "+itoa(code), func() bool {
		last = curl(t, w, nil, args...)
		return last.code == code
	})
	_ = last
}

// waitFor polls cond every 50 ms for at most 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// metric returns the value of the sample named exactly (with its labels in
// the exposition's order), or -1.
func metric(exposition, sample string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`)
	m := re.FindStringSubmatch(exposition)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return -1
	}
	return v
}

func grep(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestE2EDialOriginalAndExclude: --dial=original sends an allowed request to
// the address the app connected to; --exclude-cidr destinations are not
// redirected at all.
func TestE2EDialOriginalAndExclude(t *testing.T) {
	w := newWorld(t)
	excluded := netip.MustParseAddr("198.19.5.2") // the external veth end; the upstreams listen there too
	a := startAgent(t, w, 0, "--dial", "original", "--exclude-cidr", excluded.String()+"/32")

	r := curl(t, w, w.pod, at("a.allowed.test", portHTTP, decoy4)...)
	if r.code != 200 || r.field("local") != decoy4.String() {
		t.Errorf("--dial=original: %d, upstream reached at %q, want %v\n%s%s", r.code, r.field("local"), decoy4, r.body, r.err)
	}
	if r := curl(t, w, w.pod, at("denied.test", portHTTP, decoy4)...); r.code != 403 {
		t.Errorf("--dial=original still decides: %d, want 403", r.code)
	}
	r = curl(t, w, nil, at("denied.test", portHTTP, excluded)...)
	if r.code != 200 || r.field("local") != excluded.String() {
		t.Errorf("excluded CIDR: %d at %q, want 200 straight from the upstream\n%s%s", r.code, r.field("local"), r.body, r.err)
	}
	if strings.Contains(a.output(), "orig_dst="+excluded.String()) {
		t.Errorf("a connection to an excluded CIDR went through egressd:\n%s", a.output())
	}
}

// TestE2EAgentInsideCgroup runs egressd inside the cgroup it redirects, as
// the DaemonSet's pod sits inside kubepods: its own upstream and DNS
// sockets carry the socket mark, so they leave instead of looping back.
func TestE2EAgentInsideCgroup(t *testing.T) {
	w := newWorld(t)
	w.agentCgroup = w.cgroup
	a := startAgent(t, w, 0)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"HTTP", at("a.allowed.test", portHTTP, decoy4)},
		{"HTTPS-marked port", at("tls.whitelisted.test", portTLS, decoy4)},
		{"h2c", append([]string{"--http2-prior-knowledge"}, at("exact.whitelisted.test", portH2C, decoy4)...)},
	} {
		if r := curl(t, w, w.pod, tc.args...); r.code != 200 {
			t.Errorf("%s: %d\n%s%s", tc.name, r.code, r.body, r.err)
		}
	}
	_, m := a.get("/metrics")
	if n := metric(m, `egressd_redirect_events_total{event="skipped_mark"}`); n < 3 {
		t.Errorf("egressd's own connects skipped by their mark: %v, want >= 3", n)
	}
	assertNoBypass(t, w)
}

// TestE2ELeastPrivilege runs the agent with only the capabilities the
// DaemonSet grants (deploy/daemonset.yaml): CAP_BPF and CAP_NET_ADMIN. It
// attaches, takes over its own pins after a restart, and proxies.
func TestE2ELeastPrivilege(t *testing.T) {
	w := newWorld(t)
	w.agentWrap = []string{"setpriv", "--bounding-set", "-all,+bpf,+net_admin", "--inh-caps", "-all", "--"}
	port := freePort(t)
	a := startAgent(t, w, port)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", a.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	// CAP_NET_ADMIN is bit 12, CAP_BPF bit 39.
	if !strings.Contains(string(status), "CapEff:\t0000008000001000\n") {
		t.Fatalf("egressd does not run with exactly CAP_BPF and CAP_NET_ADMIN:\n%s", grep(string(status), "Cap"))
	}
	if r := curl(t, w, w.pod, at("tls.whitelisted.test", portTLS, decoy4)...); r.code != 200 || r.field("tls") != "true" {
		t.Errorf("first agent: %d\n%s%s", r.code, r.body, r.err)
	}
	a.signal(syscall.SIGTERM)
	if code := a.wait(t); code != 0 {
		t.Errorf("exit code %d\n%s", code, a.output())
	}
	startAgent(t, w, port) // takes the pins over
	if r := curl(t, w, nil, at("a.allowed.test", portHTTP, decoy6)...); r.code != 200 {
		t.Errorf("second agent: %d\n%s%s", r.code, r.body, r.err)
	}
	if r := curl(t, w, nil, at("denied.test", portHTTP, decoy4)...); r.code != 403 {
		t.Errorf("second agent, denied: %d", r.code)
	}
	assertNoBypass(t, w)
}

// TestE2EShutdownTimeout: a request still running at --shutdown-timeout is
// cut, and the exit code says so.
func TestE2EShutdownTimeout(t *testing.T) {
	w := newWorld(t)
	a := startAgent(t, w, 0, "--shutdown-timeout", "500ms")
	done := make(chan response, 1)
	go func() {
		done <- curl(t, w, nil, "--resolve", "slow.allowed.test:80:"+decoy4.String(), "http://slow.allowed.test/slow?ms=4000")
	}()
	waitFor(t, "the request at the upstream", func() bool { return w.rec.Count(real4)+w.rec.Count(real6) >= 1 })
	a.signal(syscall.SIGTERM)
	if code := a.wait(t); code != 1 {
		t.Errorf("exit code %d, want 1\n%s", code, a.output())
	}
	if r := <-done; r.code == 200 {
		t.Errorf("the cut request got 200")
	}
	if !strings.Contains(a.output(), "were cut") {
		t.Errorf("the cut is not reported:\n%s", a.output())
	}
}
