package e2e

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/egressd/egressd/internal/kerneltest"
	"github.com/egressd/egressd/internal/kubetest"
	"github.com/egressd/egressd/internal/upstream"
)

// The addresses of TestE2EKubernetes (198.19.16.0/22: this test's own).
var (
	kubeHost4  = netip.MustParseAddr("198.19.16.1") // the host's end: egressd's source address
	kubeDecoy4 = netip.MustParseAddr("198.19.16.10")
	kubeReal4  = netip.MustParseAddr("198.19.16.11")
	kubeDNS4   = netip.MustParseAddr("198.19.16.53")
)

// TestE2EKubernetes: egressd run --kubernetes against a real kube-apiserver
// (kubetest: etcd and kube-apiserver on loopback, deploy/'s CRD), with
// pods' cgroups laid out as the kubelet's cgroupfs driver lays them out
// below the test cgroup, and curl run in them. A pod in team-a reaches
// team-a's host and the global ones (--rules and the global namespace's
// EgressRule) and gets 403 for team-b's; team-b's pod the reverse; a
// process outside any pod gets the global rules only. An EgressRule
// created in team-a opens its host for team-a's pod and not team-b's; its
// deletion closes it. A pod created and connecting at once, before the
// agent can have heard of it, is decided by its namespace's rules from
// its first request. The upstream asserts what arrived, from egressd, on
// the address egressd resolved; the access log names namespace and pod.
func TestE2EKubernetes(t *testing.T) {
	kerneltest.Require(t)
	kubetest.Require(t)
	srv := kubetest.Start(t, 21610, "") // kubetest.MinimalCRD: the agent's checks, not the CRD's
	nsGVR := schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	for _, ns := range []string{"team-a", "team-b", "platform"} {
		srv.Create(t, nsGVR, "", map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}})
	}
	rule := func(ns, name, service string) {
		t.Helper()
		srv.Create(t, kubetest.EgressRuleGVR, ns, map[string]any{
			"apiVersion": "config.istio.io/v1alpha2", "kind": "EgressRule",
			"metadata": map[string]any{"name": name, "namespace": ns},
			"spec": map[string]any{"destination": map[string]any{"service": service},
				"ports": []any{map[string]any{"port": int64(80), "protocol": "http"}}},
		})
	}
	rule("team-a", "a-api", "a.kube.test")
	rule("team-b", "b-api", "*.b.kube.test")
	rule("platform", "shared", "platform.kube.test")
	podGVR := schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	pod := func(ns, name string) string {
		t.Helper()
		u := srv.Create(t, podGVR, ns, map[string]any{
			"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{"name": name, "namespace": ns},
			"spec": map[string]any{"nodeName": "node-1", "containers": []any{map[string]any{"name": "c", "image": "egressd.invalid/client:1"}}},
		})
		return string(u.GetUID())
	}

	ext := kerneltest.Netns(t)
	p := netip.MustParsePrefix
	_, extIf := kerneltest.Veth(t, nil, []netip.Prefix{p("198.19.16.1/24"), p("2001:2:0:1600::1/64")},
		ext, []netip.Prefix{p("198.19.16.2/24"), p("2001:2:0:1600::2/64")})
	for _, a := range []netip.Addr{kubeDecoy4, kubeReal4, kubeDNS4} {
		if err := ext.AddrAdd(extIf, netip.PrefixFrom(a, 24)); err != nil {
			t.Fatal(err)
		}
	}
	up := &scopeUpstream{}
	err := ext.Do(func() error {
		ln, err := net.Listen("tcp", "0.0.0.0:80")
		if err != nil {
			return err
		}
		s := upstream.Serve(ln, up, false, nil)
		t.Cleanup(func() { s.Close() })
		pc, err := net.ListenPacket("udp", net.JoinHostPort(kubeDNS4.String(), "53"))
		if err != nil {
			return err
		}
		dl, err := net.Listen("tcp", net.JoinHostPort(kubeDNS4.String(), "53"))
		if err != nil {
			return err
		}
		t.Cleanup(upstream.ServeDNS(pc, dl, upstream.DNS{V4: kubeReal4}))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// The node's cgroups: kubepods/besteffort/pod<uid>/<container>, and a
	// host process's cgroup beside kubepods.
	top := kerneltest.Cgroup(t)
	qos := filepath.Join(top, "kubepods", "besteffort")
	ctr := func(uid string) string {
		t.Helper()
		d := filepath.Join(qos, "pod"+uid, "ctr")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	cgA, cgB := ctr(pod("team-a", "client-a")), ctr(pod("team-b", "client-b"))
	host := filepath.Join(top, "system")
	if err := os.Mkdir(host, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeBelow(top) }) // before kerneltest removes top itself

	dir := t.TempDir()
	globalFile := filepath.Join(dir, "global.yaml")
	writeFile(t, globalFile, scopeRule("files", "global.kube.test"))
	port, admin := freePort(t), net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	a := startEgressd(t, admin, "run", "--rules", globalFile, "--cgroup", top,
		"--kubernetes", "--kubeconfig", srv.Kubeconfig, "--node-name", "node-1", "--global-namespace", "platform",
		"--proxy-port", strconv.Itoa(port), "--admin", admin, "--pin-dir", pinDir(t), "--dns", kubeDNS4.String())

	get := func(cg, h string) int {
		t.Helper()
		cmd := kerneltest.Command(t, cg, nil, "curl", "-sS", "--max-time", kerneltest.Seconds(10*time.Second), "-o", "/dev/null", "-w", "%{http_code}",
			"--resolve", h+":80:"+kubeDecoy4.String(), "http://"+h+"/")
		var out bytes.Buffer
		cmd.Stdout = &out
		_ = cmd.Run()
		code, _ := strconv.Atoi(strings.TrimSpace(out.String()))
		return code
	}
	expect := func(cg string, want map[string]int) {
		t.Helper()
		var allowed []string
		for h, code := range want {
			if got := get(cg, h); got != code {
				t.Errorf("%s from %s: %d, want %d", h, cg, got, code)
			}
			if code == 200 {
				allowed = append(allowed, h)
			}
		}
		seen := up.take()
		if len(seen) != len(allowed) {
			t.Errorf("from %s: the upstream saw %v, want one request for each of %v", cg, seen, allowed)
		}
		for _, s := range seen {
			if want[s.host] != 200 || s.remote != kubeHost4 || s.local != kubeReal4 {
				t.Errorf("from %s: the upstream saw %+v; want only allowed hosts, from %v (egressd), on %v", cg, s, kubeHost4, kubeReal4)
			}
		}
	}
	expect(cgA, map[string]int{"a.kube.test": 200, "global.kube.test": 200, "platform.kube.test": 200, "x.b.kube.test": 403})
	expect(cgB, map[string]int{"x.b.kube.test": 200, "global.kube.test": 200, "platform.kube.test": 200, "a.kube.test": 403})
	expect(host, map[string]int{"global.kube.test": 200, "platform.kube.test": 200, "a.kube.test": 403, "x.b.kube.test": 403})
	// The access log is written in batches (at most 100 ms late).
	waitFor(t, "the access log naming team-a's pod", func() bool {
		l := grep(a.output(), "host=a.kube.test")
		return strings.Contains(l, "namespace=team-a") && strings.Contains(l, "pod=client-a")
	})

	reloads := func(ns string) float64 {
		_, m := a.get("/metrics")
		return metric(m, `egressd_rules_reloads_total{namespace="`+ns+`",result="applied"}`)
	}
	// A new EgressRule in team-a: open for team-a's pod, not team-b's.
	before := reloads("team-a")
	rule("team-a", "a-new", "new.kube.test")
	waitFor(t, "team-a's new EgressRule applied", func() bool { return reloads("team-a") > before })
	expect(cgA, map[string]int{"new.kube.test": 200})
	expect(cgB, map[string]int{"new.kube.test": 403})
	before = reloads("team-a")
	if err := srv.Client.Resource(kubetest.EgressRuleGVR).Namespace("team-a").Delete(t.Context(), "a-new", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "team-a's EgressRule deleted", func() bool { return reloads("team-a") > before })
	expect(cgA, map[string]int{"new.kube.test": 403, "a.kube.test": 200})

	// A pod that starts and connects at once: created in the API, its
	// cgroup made and curl run in it right away.
	cgFast := ctr(pod("team-b", "fast"))
	expect(cgFast, map[string]int{"x.b.kube.test": 200})
	waitFor(t, "the fast pod's request logged as team-b's", func() bool {
		return strings.Contains(grep(a.output(), "pod=fast"), "namespace=team-b")
	})
}

// removeBelow removes the (empty) cgroups below top, deepest first.
func removeBelow(top string) {
	var dirs []string
	_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && p != top {
			dirs = append(dirs, p)
		}
		return nil
	})
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		_ = os.Remove(d)
	}
}
