package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/kerneltest"
)

// TestE2EShutdownDrains: on SIGTERM requests in flight finish, new
// connections are refused (not let through), /readyz turns 503, exit 0.
func TestE2EShutdownDrains(t *testing.T) {
	w := newWorld(t)
	a := startAgent(t, w, 0)
	const n = 5
	var inFlight []<-chan response
	for range n {
		inFlight = append(inFlight, curlAsync(t, w, "--resolve", "slow.allowed.test:80:"+decoy4.String(), "http://slow.allowed.test/slow?ms=2000"))
	}
	waitFor(t, "requests in flight at the upstream", func() bool { return w.rec.Count(real4)+w.rec.Count(real6) >= n })
	a.signal(syscall.SIGTERM)
	waitFor(t, "/readyz 503 while draining", func() bool { code, _ := a.get("/readyz"); return code == 503 })
	// The listener closes right after /readyz turns: from then on a new
	// connect is refused (the programs stay attached), never let through.
	waitFor(t, "new connects refused while draining", func() bool {
		return curl(t, w, nil, at("a.allowed.test", portHTTP, decoy4)...).code == 0
	})
	for _, r := range inFlight {
		if code := (<-r).code; code != 200 {
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
	stopLoop := sync.OnceFunc(func() { close(stop) })
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		for i := 0; i < 2000; i++ { // bounded: about 10 ms per curl
			select {
			case <-stop:
				return
			default:
			}
			r := curl(t, w, nil, "--max-time", kerneltest.Seconds(3*time.Second), "--resolve", "loop.allowed.test:80:"+decoy4.String(), "http://loop.allowed.test/")
			mu.Lock()
			counts[r.code]++
			mu.Unlock()
		}
	}()
	// On every path (a failed wait below ends the test at once) the loop
	// stops before the world goes: it must not use t after the test.
	t.Cleanup(func() { stopLoop(); <-loopDone })
	ok := func() int { mu.Lock(); defer mu.Unlock(); return counts[200] }
	waitFor(t, "requests through the first agent", func() bool { return ok() >= 10 })

	a.signal(syscall.SIGKILL)
	a.wait(t)
	time.Sleep(300 * time.Millisecond) // a visible gap
	before := ok()
	b := startAgent(t, w, port)
	waitFor(t, "requests through the second agent", func() bool { return ok() >= before+10 })
	stopLoop()
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

// TestE2EShutdownTimeout: a request still running at --shutdown-timeout is
// cut, and the exit code says so.
func TestE2EShutdownTimeout(t *testing.T) {
	w := newWorld(t)
	a := startAgent(t, w, 0, "--shutdown-timeout", "500ms")
	done := curlAsync(t, w, "--resolve", "slow.allowed.test:80:"+decoy4.String(), "http://slow.allowed.test/slow?ms=4000")
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
