//go:build k8s

package k8s

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/kerneltest"
	"github.com/egressd/egressd/internal/mounts"
)

const (
	proxied      = "proxied.e2e.test" // a useEgressProxy rule's host
	infraNS      = "e2e-infra"        // listed by --exempt-label-namespace
	tenantNS     = "e2e-tenant"       // not listed
	gatewayLabel = "app.kubernetes.io/name=egressd-gateway"
)

// TestGatewayTier applies deploy/ with the gateway component
// (deploy/gateway: 2 replicas; this cluster has one node, so both run on
// it and the spread constraint, ScheduleAnyway, cannot spread them) and the
// agent watching the node's pods (--kubernetes), so that it exempts the
// gateway's pods (egressd.io/gateway=true in egressd-system) and pods
// labelled egressd.io/exempt=true in e2e-infra only. Then: a useEgressProxy
// rule's request reaches the upstream from a gateway pod's address and is
// in that pod's access log, never from the agent's; a direct rule's from
// the agent's; one gateway replica deleted under a request loop loses at
// most the one request in flight; an exempt-labelled pod reaches the
// upstream itself while its unlabelled neighbour gets 403, and a labelled
// pod of a namespace not listed gets 403 too.
func TestGatewayTier(t *testing.T) {
	kerneltest.Require(t)
	kerneltest.LockHost(t)
	c := startCluster(t)
	v := c.vars
	up := startUpstream(t, v["K8S_EXT_NS"], v["K8S_EXT_IP"])
	agentAddr := netip.MustParseAddr(v["K8S_EXT_GW"]) // the node's source address towards the upstream

	c.applyGateway(t)
	c.waitReady("egressd-system", "pod/"+mustAgent(t, c), 2*time.Minute)
	c.kubectl("-n", "egressd-system", "rollout", "status", "deployment/egressd-gateway", "--timeout=3m")
	gws := c.gatewayPods(t)
	if len(gws) < 2 {
		t.Fatalf("gateway pods: %v, want 2", gws)
	}
	nodes := c.kubectl("-n", "egressd-system", "get", "pods", "-l", gatewayLabel, "-o", `jsonpath={.items[*].spec.nodeName}`)
	t.Logf("gateway replicas %v on nodes %q: one node, so the spread constraint (ScheduleAnyway) cannot spread them", gws, nodes)
	for name := range gws {
		c.waitExempt(t, "egressd-system/"+name, "gateway")
	}
	c.startPod(t, "default", "client", nil, allowed, denied, proxied)

	t.Run("useEgressProxy request leaves from a gateway pod", func(t *testing.T) {
		c := c.with(t)
		before := len(up.snapshot())
		if code, out := c.httpGet("client", "http://"+proxied+"/"); code != 200 || !strings.Contains(out, "upstream "+proxied) {
			t.Fatalf("proxied host: %d\n%s", code, out)
		}
		hits := up.snapshot()[before:]
		if len(hits) != 1 || hits[0].Host != proxied {
			t.Fatalf("upstream saw %v, want one request for %s", hits, proxied)
		}
		gw, ok := gws.byAddr(hits[0].From)
		if !ok {
			t.Fatalf("upstream saw %s from %s: not a gateway pod's address (%v; the agent's is %s)", proxied, hits[0].From, gws, agentAddr)
		}
		// The gateway's access log says it forwarded it, for the node
		// (the agent) as its client.
		logs, ok := c.waitLog("egressd-system", gw, 30*time.Second, func(lines []string) bool {
			return accessLogged(lines, proxied, "allow")
		})
		if !ok {
			t.Fatalf("gateway %s's log has no allowed request for %s after 30 s:\n%s", gw, proxied, strings.Join(logs, "\n"))
		}
		t.Logf("%s reached the upstream from gateway pod %s (%s)", proxied, gw, hits[0].From)
	})

	t.Run("a direct rule's request still leaves from the agent", func(t *testing.T) {
		c := c.with(t)
		before := len(up.snapshot())
		if code, out := c.httpGet("client", "http://"+allowed+"/"); code != 200 {
			t.Fatalf("allowed host: %d\n%s", code, out)
		}
		hits := up.snapshot()[before:]
		if len(hits) != 1 || hits[0].Host != allowed || hits[0].From != agentAddr {
			t.Fatalf("upstream saw %v, want one request for %s from the agent (%s)", hits, allowed, agentAddr)
		}
		for name := range gws {
			if logs := c.kubectl("-n", "egressd-system", "logs", name); strings.Contains(logs, allowed) {
				t.Errorf("gateway %s saw %s, which is not a useEgressProxy rule's", name, allowed)
			}
		}
		if code, _ := c.httpGet("client", "http://"+denied+"/"); code != 403 {
			t.Fatalf("denied host: %d, want 403", code)
		}
	})

	t.Run("a gateway replica deleted under a request loop", func(t *testing.T) {
		c := c.with(t)
		before := len(up.snapshot())
		var victim string
		for name := range gws {
			victim = name
			break
		}
		poll := c.pollFromClient(t, "http://"+proxied+"/")
		c.kubectl("-n", "egressd-system", "delete", "pod", victim, "--wait=false")
		// The Deployment replaces it; wait for the new pod to be ready and
		// exempt, and for the old one to be gone, with the loop running.
		c.kubectl("-n", "egressd-system", "wait", "--for=delete", "pod/"+victim, "--timeout=90s")
		c.kubectl("-n", "egressd-system", "rollout", "status", "deployment/egressd-gateway", "--timeout=2m")
		now := c.gatewayPods(t)
		for name := range now {
			c.waitExempt(t, "egressd-system/"+name, "gateway")
		}
		// A few more requests with the new replica in the Service.
		time.Sleep(3 * time.Second)
		codes := poll.stopAfter200(t)
		ok, lost := strings.Count(codes, "2"), len(codes)-strings.Count(codes, "2")
		t.Logf("%d requests during the replacement: %d 200, %d lost (%q)", len(codes), ok, lost, codes)
		// The loop has one request in flight at a time: at most one may
		// be lost with the replica; the agent retries the rest.
		if lost > 1 || ok < 20 {
			t.Fatalf("requests during the replacement (2: 200, 0: no answer, 4/5: 403/502): %q: %d lost, want at most 1 (the one in flight)", codes, lost)
		}
		all := gatewayAddrs(gws, now)
		n := 0
		for _, h := range up.snapshot()[before:] {
			if h.Host != proxied {
				continue
			}
			n++
			if _, ok := all[h.From]; !ok {
				t.Errorf("upstream saw %s from %s, not from a gateway pod (%v)", proxied, h.From, all)
			}
		}
		// Every 200 reached the upstream; a lost request may have too.
		if n < ok || n > ok+lost {
			t.Errorf("upstream saw %d requests for %s, the loop %d answers 200 and %d lost", n, proxied, ok, lost)
		}
		gws = now
	})

	t.Run("exempt label honoured only in listed namespaces", func(t *testing.T) {
		c := c.with(t)
		exemptLabel := map[string]string{"egressd.io/exempt": "true"}
		c.startPod(t, infraNS, "exempt", exemptLabel, denied)
		c.startPod(t, infraNS, "plain", nil, denied)
		c.startPod(t, tenantNS, "labelled", exemptLabel, denied)
		c.waitExempt(t, infraNS+"/exempt", "label")
		ip := c.podIP(t, infraNS, "exempt")
		before := len(up.snapshot())
		if code, out := c.httpGetIn(infraNS, "exempt", "http://"+denied+"/"); code != 200 {
			t.Fatalf("exempt pod, a host no rule allows: %d, want 200 from the upstream itself\n%s", code, out)
		}
		hits := up.snapshot()[before:]
		if len(hits) != 1 || hits[0].From != ip {
			t.Fatalf("upstream saw %v, want one request from the exempt pod's own address %s", hits, ip)
		}
		for _, p := range [][2]string{{infraNS, "plain"}, {tenantNS, "labelled"}} {
			if code, out := c.httpGetIn(p[0], p[1], "http://"+denied+"/"); code != 403 {
				t.Errorf("%s/%s: %d, want 403 from egressd\n%s", p[0], p[1], code, out)
			}
			if out := c.explainPod(t, p[0]+"/"+p[1]); !strings.HasPrefix(out, "governed") {
				t.Errorf("explain --pod %s/%s: %q, want governed", p[0], p[1], out)
			}
		}
		if out := c.explainPod(t, tenantNS+"/labelled"); !strings.Contains(out, "ignored") {
			t.Errorf("explain --pod of the tenant's labelled pod does not say the label is ignored: %q", out)
		}
		if hits := up.snapshot()[before+1:]; len(hits) != 0 {
			t.Errorf("upstream saw %v from governed pods asking for a denied host", hits)
		}
		// The label added and taken away on a running pod: exempt, then
		// governed again.
		c.kubectl("-n", infraNS, "label", "pod", "plain", "egressd.io/exempt=true")
		c.waitExempt(t, infraNS+"/plain", "label")
		if code, out := c.httpGetIn(infraNS, "plain", "http://"+denied+"/"); code != 200 {
			t.Fatalf("pod labelled at run time: %d, want 200 directly\n%s", code, out)
		}
		c.kubectl("-n", infraNS, "label", "pod", "plain", "egressd.io/exempt-")
		c.waitGoverned(t, infraNS+"/plain")
		if code, out := c.httpGetIn(infraNS, "plain", "http://"+denied+"/"); code != 403 {
			t.Fatalf("label removed: %d, want 403\n%s", code, out)
		}
		m := adminMetrics(t)
		for _, want := range []string{`egressd_exempt_cgroups{reason="label"} 1`, `egressd_exempt_cgroups{reason="gateway"} 2`} {
			if !strings.Contains(m, want+"\n") {
				t.Errorf("metrics: no %q", want)
			}
		}
		if logs := c.kubectl("-n", "egressd-system", "logs", mustAgent(t, c)); !strings.Contains(logs, `"msg":"pod exempt: not redirected","namespace":"`+infraNS+`","pod":"exempt"`) {
			t.Errorf("agent log: no line for %s/exempt becoming exempt", infraNS)
		}
	})
}

// gateways maps the gateway pods' names to their addresses.
type gateways map[string]netip.Addr

func (g gateways) byAddr(a netip.Addr) (string, bool) {
	for n, ip := range g {
		if ip == a {
			return n, true
		}
	}
	return "", false
}

func gatewayAddrs(sets ...gateways) map[netip.Addr]string {
	out := map[netip.Addr]string{}
	for _, g := range sets {
		for n, ip := range g {
			out[ip] = n
		}
	}
	return out
}

// gatewayPods returns the gateway pods not being deleted.
func (c *cluster) gatewayPods(t *testing.T) gateways {
	t.Helper()
	out := c.kubectl("-n", "egressd-system", "get", "pods", "-l", gatewayLabel, "-o",
		`jsonpath={range .items[*]}{.metadata.name} {.status.podIP} {.metadata.deletionTimestamp}{"\n"}{end}`)
	g := gateways{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			ip, err := netip.ParseAddr(f[1])
			if err != nil {
				t.Fatalf("gateway pod %s: address %q", f[0], f[1])
			}
			g[f[0]] = ip
		}
	}
	return g
}

// explainPod runs egressd explain --pod in the agent's pod.
func (c *cluster) explainPod(t *testing.T, pod string) string {
	t.Helper()
	return strings.TrimSpace(c.execIn("egressd-system", mustAgent(t, c), "egressd", "explain", "--pod", pod))
}

// execIn runs a command in a pod of namespace ns and returns its output,
// whatever its exit status.
func (c *cluster) execIn(ns, pod string, cmd ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := c.kubectlCtx(ctx, nil, append([]string{"-n", ns, "exec", pod, "--"}, cmd...)...)
	return out
}

// waitExempt waits until the agent says pod is exempt with reason.
func (c *cluster) waitExempt(t *testing.T, pod, reason string) {
	t.Helper()
	c.waitExplain(t, pod, func(s string) bool { return strings.HasPrefix(s, "exempt") && strings.Contains(s, "reason="+reason) })
}

func (c *cluster) waitGoverned(t *testing.T, pod string) {
	t.Helper()
	c.waitExplain(t, pod, func(s string) bool { return strings.HasPrefix(s, "governed") })
}

func (c *cluster) waitExplain(t *testing.T, pod string, ok func(string) bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		out := c.explainPod(t, pod)
		if ok(out) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("egressd explain --pod %s after 1 min: %q", pod, out)
		}
		time.Sleep(time.Second)
	}
}

// accessLogged reports whether a JSON access-log line of lines names host
// with decision.
func accessLogged(lines []string, host, decision string) bool {
	for _, l := range lines {
		if strings.Contains(l, `"msg":"request"`) && strings.Contains(l, `"host":"`+host+`"`) && strings.Contains(l, `"decision":"`+decision+`"`) {
			return true
		}
	}
	return false
}

// adminMetrics scrapes the agent's /metrics: its admin port is on the
// node's loopback, which is this namespace's.
func adminMetrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://127.0.0.1:15090/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// applyGateway applies deploy/ with the gateway component, in an overlay
// setting this node's cgroup and excluded ranges, the agent watching the
// pods of its node with --exempt-label-namespace e2e-infra, the rules
// (allowed direct, proxied through the egress proxy) and the test's
// namespaces.
func (c *cluster) applyGateway(t *testing.T) {
	t.Helper()
	cg2, err := mounts.Find("cgroup2")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rel := func(p string) string {
		r, err := filepath.Rel(dir, filepath.Join(c.repo, p))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	v := c.vars
	rules := rulesFor(allowed) + "---\n" + fmt.Sprintf(`kind: EgressRule
metadata:
  name: e2e-proxied
spec:
  destination:
    service: %s
  ports:
    - port: 80
      protocol: http
  useEgressProxy: true
`, proxied)
	kust := fmt.Sprintf(`resources:
  - %s
  - namespaces.yaml
components:
  - %s
patches:
  - patch: |-
      apiVersion: apps/v1
      kind: DaemonSet
      metadata: {name: egressd, namespace: egressd-system}
      spec:
        template:
          spec:
            automountServiceAccountToken: true
            containers:
              - name: egressd
                env:
                  - name: EGRESSD_CGROUP
                    value: %s/kubepods
                  - name: EGRESSD_EXCLUDE_CIDR
                    value: %s,%s,%s/32
                  - name: EGRESSD_KUBERNETES
                    value: "true"
                  - name: EGRESSD_NODE_NAME
                    valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
                  - name: EGRESSD_EXEMPT_LABEL_NAMESPACE
                    value: %s
  - patch: |-
      apiVersion: v1
      kind: ConfigMap
      metadata: {name: egressd-rules, namespace: egressd-system}
      data:
        e2e.yaml: |
%s`, rel("deploy"), rel("deploy/gateway"), cg2, v["K8S_POD_CIDR"], v["K8S_SVC_CIDR"], v["K8S_NODE_IP"], infraNS, indent(rules, 10))
	nss := fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n", infraNS, tenantNS)
	for name, body := range map[string]string{"kustomization.yaml": kust, "namespaces.yaml": nss} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c.kubectl("apply", "-k", dir)
}

// startPod runs a busybox pod sleeping, with labels, whose /etc/hosts
// names hosts at the external address, and waits for it.
func (c *cluster) startPod(t *testing.T, ns, name string, labels map[string]string, hosts ...string) {
	t.Helper()
	var ls strings.Builder
	for k, v := range labels {
		fmt.Fprintf(&ls, "%q: %q, ", k, v)
	}
	pod := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s, labels: {%s}}
spec:
  terminationGracePeriodSeconds: 1
  hostAliases: [{ip: %q, hostnames: [%s]}]
  containers:
    - name: client
      image: %s
      imagePullPolicy: Never
      command: [sh, -c, "exec sleep 3600"]
`, name, ns, strings.TrimSuffix(ls.String(), ", "), c.vars["K8S_EXT_IP"], quoteAll(hosts), c.vars["K8S_CLIENT_IMAGE"])
	c.kubectlIn([]byte(pod), "apply", "-f", "-")
	c.waitReady(ns, "pod/"+name, 2*time.Minute)
}

func quoteAll(s []string) string {
	q := make([]string, len(s))
	for i, x := range s {
		q[i] = fmt.Sprintf("%q", x)
	}
	return strings.Join(q, ", ")
}

func (c *cluster) podIP(t *testing.T, ns, name string) netip.Addr {
	t.Helper()
	s := c.kubectl("-n", ns, "get", "pod", name, "-o", "jsonpath={.status.podIP}")
	ip, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		t.Fatalf("pod %s/%s: address %q", ns, name, s)
	}
	return ip
}

// httpGetIn is httpGet for a pod of namespace ns.
func (c *cluster) httpGetIn(ns, pod, url string) (int, string) {
	return parseFetch(c.execIn(ns, pod, "fetch", url))
}
