//go:build k8s

package k8s

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/kerneltest"
	"github.com/egressd/egressd/internal/mounts"
)

const (
	allowed = "allowed.e2e.test"
	denied  = "denied.e2e.test"
)

// TestDaemonSetOnANode applies deploy/ to a fresh single-node cluster the way
// README's "Kubernetes" section says (an overlay of deploy/ setting the
// cgroup and the excluded ranges, `kubectl apply -k`, one step) and checks
// what a user relies on, in order. The cases share the cluster (it takes
// ~1 min to start) and run in sequence.
func TestDaemonSetOnANode(t *testing.T) {
	kerneltest.Require(t)
	// The cluster puts addresses, routes, iptables rules and sysctls in the
	// host namespace: take turns with the other kernel tests.
	kerneltest.LockHost(t)
	c := startCluster(t)
	v := c.vars
	up := startUpstream(t, v["K8S_EXT_NS"], v["K8S_EXT_IP"])
	egressdAddr := netip.MustParseAddr(v["K8S_EXT_GW"]) // the node's source address towards the upstream

	c.applyAsREADME(t)
	c.waitReady("egressd-system", "pod/"+mustAgent(t, c), 2*time.Minute)
	c.startClient(t)

	t.Run("kubectl apply refuses invalid EgressRules with egressd's messages", func(t *testing.T) {
		testCRDRefusesInvalidRules(t, c.with(t))
	})

	t.Run("allowed 200, denied 403, upstream sees egressd", func(t *testing.T) {
		c := c.with(t)
		if code, out := c.httpGet("client", "http://"+allowed+"/"); code != 200 || !strings.Contains(out, "upstream "+allowed) {
			t.Fatalf("allowed host: %d\n%s", code, out)
		}
		// The 200 must have come through egressd: a pod reaching the
		// upstream itself also gets 200, from its own address.
		checkUpstream(t, up, egressdAddr, map[string]bool{allowed: true})
		if code, out := c.httpGet("client", "http://"+denied+"/"); code != 403 {
			t.Fatalf("denied host: %d, want 403 from egressd\n%s", code, out)
		}
		checkUpstream(t, up, egressdAddr, map[string]bool{allowed: true})
	})

	t.Run("ConfigMap rule change without restart", func(t *testing.T) {
		c := c.with(t)
		agent, uid := c.agentPod()
		c.kubectl("-n", "egressd-system", "patch", "configmap", "egressd-rules", "--type", "merge", "-p",
			fmt.Sprintf(`{"data":{"e2e.yaml":%q}}`, rulesFor(allowed, denied)))
		// The kubelet swaps the mounted files (syncFrequency 5s here, up to a
		// minute by default); egressd reloads by itself.
		deadline := time.Now().Add(90 * time.Second)
		for {
			code, out := c.httpGet("client", "http://"+denied+"/")
			if code == 200 {
				break
			}
			if code != 403 || time.Now().After(deadline) {
				t.Fatalf("after the rule change: %d\n%s", code, out)
			}
			time.Sleep(time.Second)
		}
		if name, now := c.agentPod(); name != agent || now != uid {
			t.Fatalf("agent pod changed from %s/%s to %s/%s: the change needed a restart", agent, uid, name, now)
		}
		if n := c.kubectl("-n", "egressd-system", "get", "pod", agent, "-o", "jsonpath={.status.containerStatuses[0].restartCount}"); n != "0" {
			t.Fatalf("agent restarted %s times", n)
		}
		checkUpstream(t, up, egressdAddr, map[string]bool{allowed: true, denied: true})
	})

	t.Run("API server by service IP, logs, exec, probes", func(t *testing.T) {
		c := c.with(t)
		// The kubernetes service (kube-proxy's DNAT to the API server) from a
		// pod: the excluded service range is not sent to the proxy.
		code, out := c.httpGet("client", "https://"+v["K8S_API_SVC_IP"]+"/version")
		if code != 200 || !strings.Contains(out, `"gitVersion"`) {
			t.Fatalf("https://%s/version from a pod: %d\n%s", v["K8S_API_SVC_IP"], code, out)
		}
		agent := mustAgent(t, c)
		if logs, ok := c.waitLog("egressd-system", agent, 30*time.Second, func(lines []string) bool {
			return strings.Contains(lines[len(lines)-1], allowed)
		}); !ok {
			t.Fatalf("kubectl logs: no access-log line for %s after 30 s:\n%s", allowed, strings.Join(logs, "\n"))
		}
		if out := c.kubectl("-n", "egressd-system", "exec", agent, "--", "egressd", "explain", "--rules", "/etc/egressd/rules", allowed+":80"); !strings.Contains(out, "e2e-0") {
			t.Fatalf("kubectl exec egressd explain: no rule e2e-0 for %s:\n%s", allowed, out)
		}
		// Readiness (httpGet from the kubelet) and liveness (exec inside the
		// governed pod, to its own loopback) of the client; the agent's own
		// probes on 127.0.0.1:15090.
		c.waitReady("default", "pod/client", time.Minute)
		for _, p := range []string{"pod/client", "pod/" + agent} {
			ns := "default"
			if p != "pod/client" {
				ns = "egressd-system"
			}
			if n := c.kubectl("-n", ns, "get", p, "-o", "jsonpath={.status.containerStatuses[0].restartCount}"); n != "0" {
				t.Errorf("%s restarted %s times (liveness probe failing?)", p, n)
			}
		}
	})

	t.Run("EgressRules per namespace", func(t *testing.T) {
		testScoping(t, c.with(t), up, egressdAddr)
	})

	t.Run("agent pod deleted: fail closed, new pod takes over", func(t *testing.T) {
		c := c.with(t)
		old, oldUID := c.agentPod()
		poll := c.pollFromClient(t, "http://"+allowed+"/")
		c.kubectl("-n", "egressd-system", "delete", "pod", old, "--wait=false")
		deadline := time.Now().Add(2 * time.Minute)
		var name string
		for {
			var uid string
			name, uid = c.agentPod()
			if name != "" && uid != oldUID {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no new agent pod after 2 min")
			}
			time.Sleep(500 * time.Millisecond)
		}
		c.waitReady("egressd-system", "pod/"+name, 2*time.Minute)
		codes := poll.stopAfter200(t)
		// Expected: 200s, maybe refusals (code 0) while no agent listens,
		// then 200s from the new agent; never anything that bypassed it
		// (checkUpstream: every request the upstream saw came from egressd).
		// Whether there is a gap is the DaemonSet's timing: when the new
		// pod starts while the deleted one is still draining, it takes the
		// sockets over from it (handover) and nothing is refused — seen in
		// a CI run, "222222222222".
		if !strings.HasPrefix(codes, "2") || !strings.HasSuffix(codes, "2") || strings.Trim(codes, "20") != "" {
			t.Fatalf("polls during the restart (2: 200, 0: refused, 4: 403): %q; want 200s, maybe refusals, 200s", codes)
		}
		t.Logf("polls during the restart: %q (%d refused while no agent listened)", codes, strings.Count(codes, "0"))
		if strings.ContainsAny(codes, "135") {
			t.Fatalf("polls during the restart: %q: an answer other than 200 or refused", codes)
		}
		checkUpstream(t, up, egressdAddr, map[string]bool{allowed: true, denied: true, hostA: true, hostB: true, hostGlobal: true, hostNew: true})
	})

	t.Run("rollout restart: the new pod takes over, nothing refused", func(t *testing.T) {
		c := c.with(t)
		// The previous case's pod must be available (minReadySeconds) first:
		// a restart that lands seconds after an agent's own start is a
		// different case (see the issue-16 note: it was seen to hang there).
		c.kubectl("-n", "egressd-system", "rollout", "status", "daemonset/egressd", "--timeout=2m")
		_, oldUID := c.agentPod()
		poll := c.pollFromClient(t, "http://"+allowed+"/")
		c.kubectl("-n", "egressd-system", "rollout", "restart", "daemonset/egressd")
		c.kubectl("-n", "egressd-system", "rollout", "status", "daemonset/egressd", "--timeout=3m")
		if _, uid := c.agentPod(); uid == oldUID || uid == "" {
			t.Fatalf("agent pod after the rollout: uid %q (before: %q)", uid, oldUID)
		}
		codes := poll.stopAfter200(t)
		// The surge pod's agent is handed the sockets by the old one: every
		// poll gets 200, none is refused (0).
		if strings.Trim(codes, "2") != "" || len(codes) < 10 {
			t.Fatalf("polls during the rollout (2: 200, 0: refused, 4: 403): %q; want only 200s", codes)
		}
		t.Logf("%d polls during the rollout, all 200", len(codes))
		checkUpstream(t, up, egressdAddr, map[string]bool{allowed: true, denied: true, hostA: true, hostB: true, hostGlobal: true, hostNew: true})
	})

	t.Run("--uninstall makes /readyz fail", func(t *testing.T) {
		c := c.with(t)
		agent := mustAgent(t, c)
		c.kubectl("-n", "egressd-system", "exec", agent, "--", "egressd", "run", "--uninstall")
		c.kubectl("-n", "egressd-system", "wait", "--for=condition=Ready=false", "pod/"+agent, "--timeout=60s")
	})
}

func mustAgent(t *testing.T, c *cluster) string {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if name, _ := c.agentPod(); name != "" {
			return name
		}
		if time.Now().After(deadline) {
			t.Fatal("no egressd pod after 2 min")
		}
		time.Sleep(time.Second)
	}
}

// checkUpstream fails unless every request the upstream saw came from
// egressd's address and was for a host in allowedHosts: a pod's own address
// (198.18.128.x) there means a connection bypassed the proxy.
func checkUpstream(t *testing.T, up *upstream, from netip.Addr, allowedHosts map[string]bool) {
	t.Helper()
	hits := up.snapshot()
	if len(hits) == 0 {
		t.Fatal("the upstream saw no request")
	}
	for _, h := range hits {
		if h.From != from {
			t.Errorf("upstream saw %s from %s, not from egressd (%s)", h.Host, h.From, from)
		}
		if !allowedHosts[h.Host] {
			t.Errorf("upstream saw a request for %s, which no rule allowed", h.Host)
		}
	}
}

// rulesFor is an EgressRule allowing HTTP on port 80 to each host.
func rulesFor(hosts ...string) string {
	var b strings.Builder
	for i, h := range hosts {
		if i > 0 {
			b.WriteString("---\n")
		}
		fmt.Fprintf(&b, "kind: EgressRule\nmetadata:\n  name: e2e-%d\nspec:\n  destination:\n    service: %s\n  ports:\n    - port: 80\n      protocol: http\n", i, h)
	}
	return b.String()
}

// applyAsREADME writes the overlay README shows, with this node's values,
// and applies it in one step.
func (c *cluster) applyAsREADME(t *testing.T) {
	t.Helper()
	cg2, err := mounts.Find("cgroup2")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	base, err := filepath.Rel(dir, filepath.Join(c.repo, "deploy"))
	if err != nil {
		t.Fatal(err)
	}
	v := c.vars
	kust := fmt.Sprintf(`resources:
  - %s
patches:
  - patch: |-
      apiVersion: apps/v1
      kind: DaemonSet
      metadata: {name: egressd, namespace: egressd-system}
      spec:
        template:
          spec:
            containers:
              - name: egressd
                env:
                  - name: EGRESSD_CGROUP
                    value: %s/kubepods
                  - name: EGRESSD_EXCLUDE_CIDR
                    value: %s,%s,%s/32
  - patch: |-
      apiVersion: v1
      kind: ConfigMap
      metadata: {name: egressd-rules, namespace: egressd-system}
      data:
        e2e.yaml: |
%s`, base, cg2, v["K8S_POD_CIDR"], v["K8S_SVC_CIDR"], v["K8S_NODE_IP"], indent(rulesFor(allowed), 10))
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kust), 0o644); err != nil {
		t.Fatal(err)
	}
	c.kubectl("apply", "-k", dir)
}

func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if l != "" {
			b.WriteString(pad + l)
		}
	}
	return b.String()
}

// startClient runs the client pod: busybox serving its own readiness
// (httpGet from the kubelet) and liveness (exec: wget to its own loopback),
// with /etc/hosts naming the test hosts at the external address, so its
// connects go there (and are redirected) without cluster DNS.
func (c *cluster) startClient(t *testing.T) {
	t.Helper()
	v := c.vars
	pod := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default}
spec:
  terminationGracePeriodSeconds: 1
  hostAliases: [{ip: %q, hostnames: [%q, %q]}]
  containers:
    - name: client
      image: %s
      imagePullPolicy: Never
      command: [sh, -c, "mkdir -p /tmp/www && echo ok >/tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"]
      readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 2}
      livenessProbe: {exec: {command: [fetch, "http://127.0.0.1:8080/"]}, periodSeconds: 5}
`, v["K8S_EXT_IP"], allowed, denied, v["K8S_CLIENT_IMAGE"])
	c.kubectlIn([]byte(pod), "apply", "-f", "-")
	c.waitReady("default", "pod/client", 2*time.Minute)
}

// poller is a loop in the client pod fetching a URL back to back, printing
// one status per line (0: no HTTP answer).
type poller struct {
	cmd  *exec.Cmd
	c    *cluster
	out  *bufio.Scanner
	done chan string
}

func (c *cluster) pollFromClient(t *testing.T, url string) *poller {
	t.Helper()
	c.kubectl("exec", "client", "--", "rm", "-f", "/tmp/stop")
	script := fmt.Sprintf(`i=0; while [ ! -e /tmp/stop ] && [ $i -lt 3000 ]; do
  s=$(fetch -t 2s %s | sed -n 's/^HTTP \([0-9]\).*/\1/p')
  echo "code ${s:-0}"; i=$((i+1)); sleep 0.1; done`, url)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, c.kubectlBin, "--kubeconfig", c.kubeconfig, "exec", "client", "--", "sh", "-c", script)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &poller{cmd: cmd, c: c, out: bufio.NewScanner(stdout), done: make(chan string, 1)}
	first := make(chan struct{})
	go func() {
		var codes strings.Builder
		for p.out.Scan() {
			if f := strings.Fields(p.out.Text()); len(f) == 2 && f[0] == "code" {
				if codes.Len() == 0 {
					close(first)
				}
				codes.WriteString(f[1])
			}
		}
		p.done <- codes.String()
	}()
	select {
	case <-first:
	case <-time.After(time.Minute):
		t.Fatal("the poll loop printed nothing in 1 min")
	}
	return p
}

// stopAfter200 waits for the loop's next 200, stops it and returns the
// codes seen, one digit each (the status's first digit; 0: no answer).
func (p *poller) stopAfter200(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if code, _ := p.c.httpGet("client", "http://"+allowed+"/"); code == 200 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	p.c.kubectl("exec", "client", "--", "touch", "/tmp/stop")
	var codes string
	select {
	case codes = <-p.done:
	case <-time.After(time.Minute):
		t.Fatal("the poll loop did not stop")
	}
	p.cmd.Wait()
	return codes
}
