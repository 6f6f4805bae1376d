package e2e

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/kerneltest"
)

// The flooding pod's topology (its own namespace and veth): addresses of
// issue 15's range.
var (
	floodNode4 = netip.MustParsePrefix("198.18.96.1/24")
	floodPod4  = netip.MustParsePrefix("198.18.96.2/24")
	floodNode6 = netip.MustParsePrefix("2001:2:0:15::1/64")
	floodPod6  = netip.MustParsePrefix("2001:2:0:15::2/64")
)

// Flood scale: more connections than the per-client limit (1024), held
// for floodSeconds; the probing pod runs through and after it.
const (
	floodConns   = 1500
	floodSeconds = 6
	probeSeconds = floodSeconds + 3
)

// TestE2EFloodFromOnePod: one pod floods egressd while another makes a
// request every 100 ms; egressd runs in a memory cgroup with the
// DaemonSet's limit and its default limits. Per attack: egressd stays up
// (no OOM kill), ≥ 99 % of the other pod's requests succeed and none takes
// over a second, and /metrics counts the flooder's shed connections.
func TestE2EFloodFromOnePod(t *testing.T) {
	w := newWorld(t)
	flooder := kerneltest.Netns(t)
	_, podIf := kerneltest.Veth(t, nil, []netip.Prefix{floodNode4, floodNode6}, flooder, []netip.Prefix{floodPod4, floodPod6})
	for _, r := range []struct {
		dst netip.Prefix
		gw  netip.Addr
	}{{netip.MustParsePrefix("0.0.0.0/0"), floodNode4.Addr()}, {netip.MustParsePrefix("::/0"), floodNode6.Addr()}} {
		if err := flooder.RouteAdd(r.dst, podIf, r.gw); err != nil {
			t.Fatal(err)
		}
	}
	floodCg, probeCg := filepath.Join(w.cgroup, "flooder"), filepath.Join(w.cgroup, "prober")
	for _, dir := range []string{floodCg, probeCg} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	limit := daemonSetMemoryLimit(t)
	for _, attack := range []struct {
		name, kind string
		port       int
	}{
		{"unfinished 30 KiB heads", "heads", portHTTP},
		{"idle connections", "idle", portHTTP},
		{"h2c unfinished bodies", "h2body", portH2C},
	} {
		t.Run(attack.kind, func(t *testing.T) {
			mem := kerneltest.MemoryLimited(t, limit)
			w.agentWrap = mem.Wrap
			t.Cleanup(func() { w.agentWrap = nil })
			a := startAgent(t, w, 0)
			pid := a.cmd.Process.Pid
			idleRSS := rssKiB(pid, "VmRSS")

			probe := helper(t, probeCg, w.pod, "probe", decoy4.String()+":80", "exact.whitelisted.test", itoa(probeSeconds))
			flood := helper(t, floodCg, flooder, "flood", attack.kind, decoy4.String()+":"+itoa(attack.port), itoa(floodConns), itoa(floodSeconds))
			floodOut := wait(t, flood)
			floodRSS := rssKiB(pid, "VmHWM")
			probeOut := wait(t, probe)

			select {
			case <-a.done:
				t.Fatalf("egressd exited during the flood: %v", a.err)
			default:
			}
			if n := mem.OOMKills(); n != 0 {
				t.Errorf("%d OOM kill(s) in egressd's cgroup", n)
			}
			var ok, failed, worstMs int
			if _, err := fmt.Sscanf(probeOut.stdout, "ok %d failed %d max_ms %d", &ok, &failed, &worstMs); err != nil {
				t.Fatalf("probe output %q: %v", probeOut.stdout, err)
			}
			if ok == 0 || float64(ok) < 0.99*float64(ok+failed) {
				t.Errorf("the other pod: %d of %d requests succeeded, want ≥ 99 %%:\n%s", ok, ok+failed, probeOut.stderr)
			}
			if worstMs > 1000 {
				t.Errorf("the other pod waited %d ms for a request, want ≤ 1 s:\n%s", worstMs, probeOut.stderr)
			}
			_, metrics := a.get("/metrics")
			// A limit must have fired against the flood. Which one is not
			// fixed: the per-client connection limit, or under memory
			// pressure the memory threshold (a client over 16 connections is
			// shed for "memory" first), or for h2c the stream limits; and
			// how often is not fixed either: egressd also closes flood
			// connections for their own faults (a head past its deadline),
			// which frees slots (100 of 1500 shed seen in a CI run for
			// h2body, and once none for max_conns_per_client, all for memory).
			var shed float64
			for _, s := range []string{
				`egressd_connections_shed_total{reason="max_conns_per_client"}`,
				`egressd_connections_shed_total{reason="memory"}`,
				`egressd_streams_refused_total{reason="max_streams_per_client"}`,
				`egressd_streams_refused_total{reason="memory"}`,
			} {
				if n := metric(metrics, s); n > 0 {
					shed += n
				}
			}
			if shed < 1 || shed > 2*floodConns {
				t.Errorf("connections shed and streams refused = %v, want 1..%d:\n%s", shed, 2*floodConns, grep(metrics, "egressd_connections_shed")+"\n"+grep(metrics, "egressd_streams_refused"))
			}
			if n := metric(metrics, `egressd_connections_shed_total{reason="max_conns"}`); n > 0 {
				t.Errorf("%v connections shed for the node-wide max_conns: the flood of one pod reached every pod's limit", n)
			}
			t.Logf("flood %s: %s; other pod: ok %d failed %d worst %d ms; egressd RSS idle %d KiB, peak %d KiB; cgroup peak %d KiB of %d; shed %v",
				attack.kind, strings.TrimSpace(floodOut.stdout), ok, failed, worstMs, idleRSS, floodRSS, mem.Peak()>>10, limit>>10, shed)
			assertNoBypass(t, w)
		})
	}
}

// daemonSetMemoryLimit is the memory limit of deploy/daemonset.yaml.
func daemonSetMemoryLimit(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("../deploy/daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s+limits:\s*\n\s+memory:\s*(\d+)Mi\s*$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("deploy/daemonset.yaml: no limits.memory in Mi")
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n << 20
}

// rssKiB reads a VmRSS or VmHWM (peak) line of /proc/PID/status.
func rssKiB(pid int, field string) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return -1
}

type helperRun struct {
	done           chan error
	stdout, stderr string
	out, errb      *bytes.Buffer
}

// helper starts the test binary as program name (floodMain, probeMain) in
// cgroup and ns. The flooder runs at the lowest CPU priority: a pod's CPU
// is bounded by its own limit, and on a 2-core test machine an unbounded
// flooder would take the CPU that the other pod and egressd need, which
// is not what the test is about.
func helper(t *testing.T, cgroup string, ns *kerneltest.NS, name string, args ...string) *helperRun {
	t.Helper()
	argv := append([]string{os.Args[0]}, args...)
	if name == "flood" {
		argv = append([]string{"nice", "-n", "19"}, argv...)
	}
	cmd := kerneltest.Command(t, cgroup, ns, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), helperEnv+"="+name)
	h := &helperRun{done: make(chan error, 1), out: &bytes.Buffer{}, errb: &bytes.Buffer{}}
	cmd.Stdout, cmd.Stderr = h.out, h.errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { h.done <- cmd.Wait() }()
	return h
}

// wait waits for a helper (at most a minute) and returns its output.
func wait(t *testing.T, h *helperRun) *helperRun {
	t.Helper()
	select {
	case err := <-h.done:
		h.stdout, h.stderr = h.out.String(), h.errb.String()
		if err != nil {
			t.Fatalf("helper: %v\n%s%s", err, h.stdout, h.stderr)
		}
	case <-time.After(time.Minute):
		t.Fatal("helper still running after a minute")
	}
	return h
}
