//go:build k8s

package k8s

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/rules"
)

// The hosts of the scoping cases: each namespace's own, one allowed by an
// EgressRule in the global namespace (egressd-system), and one opened and
// closed while the pods run. allowed (the ConfigMap's rule) is global too.
const (
	hostA      = "a.e2e.test"
	hostB      = "b.e2e.test"
	hostGlobal = "global.e2e.test"
	hostNew    = "new.e2e.test"
	nsA        = "team-a"
	nsB        = "team-b"
)

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// egressRuleDocs returns the documents of a deploy/testdata file by
// metadata.name, in order.
func egressRuleDocs(t *testing.T, repo, file string) (names []string, docs map[string]string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repo, "deploy", "testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile(`(?m)^metadata:\n  name: (\S+)$`)
	docs = map[string]string{}
	for _, d := range docSep.Split(string(b), -1) {
		if m := name.FindStringSubmatch(d); m != nil {
			names = append(names, m[1])
			docs[m[1]] = d
		}
	}
	if len(names) == 0 {
		t.Fatalf("%s: no documents", file)
	}
	return names, docs
}

// egressdProblem is the one problem `egressd check` finds in doc, as the
// CRD words it (an API object has no lines to refer to).
func egressdProblem(t *testing.T, doc string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "rule.yaml")
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := rules.Load(f)
	var le *rules.Error
	if !errors.As(err, &le) || len(le.Problems) != 1 {
		t.Fatalf("egressd check of\n%s\ngave %v, want one problem", doc, err)
	}
	return regexp.MustCompile(` \(line \d+\)`).ReplaceAllString(le.Problems[0].Message, "")
}

// testCRDRefusesInvalidRules: `kubectl apply` of each document of
// deploy/testdata/egressrules-invalid.yaml is refused by the API server with
// the message egressd gives for it, and nothing is stored; the valid ones
// (the seed example, quoted, among them) are stored. Needs no agent.
func testCRDRefusesInvalidRules(t *testing.T, c *cluster) {
	const ns = "crd-check" // no pods: the valid rules open nothing
	c.kubectl("create", "namespace", ns)
	defer c.kubectl("delete", "namespace", ns, "--wait=false")
	names, docs := egressRuleDocs(t, c.repo, "egressrules-invalid.yaml")
	f := filepath.Join(c.repo, "deploy", "testdata", "egressrules-invalid.yaml")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := c.kubectlCtx(ctx, nil, "apply", "-n", ns, "-f", f)
	if err == nil {
		t.Fatalf("kubectl apply of invalid EgressRules succeeded:\n%s", out)
	}
	lines := strings.Split(out, "\n")
	for _, name := range names {
		want := egressdProblem(t, docs[name])
		found := false
		for _, l := range lines {
			if strings.Contains(l, `"`+name+`" is invalid`) {
				found = true
				if !strings.Contains(l, want) {
					t.Errorf("%s: kubectl apply said\n  %s\nwant egressd's message\n  %s", name, l, want)
				}
			}
		}
		if !found {
			t.Errorf("%s: kubectl apply did not refuse it:\n%s", name, out)
		}
	}
	if got := strings.TrimSpace(c.kubectl("get", "egressrules", "-n", ns, "-o", "name")); got != "" {
		t.Errorf("refused rules were stored: %s", got)
	}
	valid, _ := egressRuleDocs(t, c.repo, "egressrules-valid.yaml")
	c.kubectl("apply", "-n", ns, "-f", filepath.Join(c.repo, "deploy", "testdata", "egressrules-valid.yaml"))
	got := c.kubectl("get", "egressrules", "-n", ns, "-o", `jsonpath={range .items[*]}{.metadata.name}{"\n"}{end}`)
	if n := len(strings.Fields(got)); n != len(valid) {
		t.Errorf("%d valid EgressRules stored, want %d:\n%s", n, len(valid), got)
	}
	if s := c.kubectl("get", "egressrule", "-n", ns, "foo-egress-rule", "-o", "jsonpath={.spec.destination.service}"); s != "*.foo.com" {
		t.Errorf("the seed example's service: %q", s)
	}
	c.kubectl("delete", "egressrules", "-n", ns, "--all")
}

// egressRule is an EgressRule object allowing HTTP on port 80 to host.
func egressRule(ns, name, host string) string {
	return fmt.Sprintf("apiVersion: config.istio.io/v1alpha2\nkind: EgressRule\nmetadata: {name: %s, namespace: %s}\nspec:\n  destination: {service: %q}\n  ports: [{port: 80, protocol: http}]\n", name, ns, host)
}

// clientPod is a client pod in ns naming the test hosts at the external
// address; with a command, it runs that once (restartPolicy Never),
// otherwise it idles.
func (c *cluster) clientPod(ns, name, command string) string {
	v := c.vars
	restart, cmd := "Always", "exec sleep 3600"
	if command != "" {
		restart, cmd = "Never", command
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s}
spec:
  terminationGracePeriodSeconds: 1
  restartPolicy: %s
  hostAliases: [{ip: %q, hostnames: [%q, %q, %q, %q, %q]}]
  containers:
    - name: client
      image: %s
      imagePullPolicy: Never
      command: [sh, -c, %q]
`, name, ns, restart, v["K8S_EXT_IP"], allowed, hostA, hostB, hostGlobal, hostNew, v["K8S_CLIENT_IMAGE"], cmd)
}

// getIn fetches url from pod in ns; the status code (0: no answer).
func (c *cluster) getIn(ns, pod, url string) (int, string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := c.kubectlCtx(ctx, nil, "-n", ns, "exec", pod, "--", "fetch", url)
	return parseFetch(out)
}

// hits counts the requests for host the upstream has seen.
func (u *upstream) hitsFor(host string) int {
	n := 0
	for _, h := range u.snapshot() {
		if h.Host == host {
			n++
		}
	}
	return n
}

// expect fetches http://host/ from ns's client and wants code; a 403 must
// not have reached the upstream, a 200 must have, from egressd's address.
func expect(t *testing.T, c *cluster, up *upstream, from netip.Addr, ns, host string, want int) {
	t.Helper()
	before := up.hitsFor(host)
	code, out := c.getIn(ns, "client", "http://"+host+"/")
	if code != want {
		t.Fatalf("%s → %s: %d, want %d\n%s", ns, host, code, want, out)
	}
	after := up.snapshot()
	n := 0
	for _, h := range after {
		if h.Host == host {
			n++
			if h.From != from {
				t.Errorf("upstream saw %s from %s, not from egressd (%s)", host, h.From, from)
			}
		}
	}
	switch {
	case want == 200 && (n != before+1 || !strings.Contains(out, "upstream "+host)):
		t.Fatalf("%s → %s: 200 but the upstream saw %d new requests for it\n%s", ns, host, n-before, out)
	case want != 200 && n != before:
		t.Fatalf("%s → %s: %d, yet the upstream received the request", ns, host, code)
	}
}

// scopedCase is a request from ns's client pod to host, answered code.
type scopedCase struct {
	ns, host string
	code     int
}

// scopedCases: each namespace reaches its own host and the global ones
// and gets 403 for the other's.
var scopedCases = []scopedCase{
	{nsA, hostA, 200}, {nsA, hostGlobal, 200}, {nsA, allowed, 200}, {nsA, hostB, 403},
	{nsB, hostB, 200}, {nsB, hostGlobal, 200}, {nsB, allowed, 200}, {nsB, hostA, 403},
}

// expectScoped checks scopedCases from both namespaces' clients.
func expectScoped(t *testing.T, c *cluster, up *upstream, from netip.Addr) {
	t.Helper()
	for _, tc := range scopedCases {
		expect(t, c, up, from, tc.ns, tc.host, tc.code)
	}
}

// checkAccessLog: the agent logged each of scopedCases with the status,
// the namespace and pod, and the client address of that pod.
func checkAccessLog(t *testing.T, c *cluster) {
	t.Helper()
	ips := map[string]string{}
	for _, ns := range []string{nsA, nsB} {
		ips[ns] = c.kubectl("-n", ns, "get", "pod", "client", "-o", "jsonpath={.status.podIP}")
	}
	type line struct {
		Msg, Client, Host, Namespace, Pod string
		Status                            int
	}
	logged := func(tc scopedCase, lines []line) bool {
		for _, e := range lines {
			host, _, _ := strings.Cut(e.Host, ":")
			client, _ := netip.ParseAddrPort(e.Client)
			if host == tc.host && e.Status == tc.code && e.Namespace == tc.ns &&
				(e.Pod == "client" || e.Pod == tc.ns+"/client") && client.Addr().String() == ips[tc.ns] {
				return true
			}
		}
		return false
	}
	var requests []line
	allLogged := func() bool {
		for _, tc := range scopedCases {
			if !logged(tc, requests) {
				return false
			}
		}
		return true
	}
	// The access log is written in batches: follow it until every case is
	// there (or 30 s pass), then name the missing ones.
	logs, _ := c.waitLog("egressd-system", mustAgent(t, c), 30*time.Second, func(lines []string) bool {
		var e line
		if json.Unmarshal([]byte(lines[len(lines)-1]), &e) == nil && e.Msg == "request" {
			requests = append(requests, e)
		}
		return allLogged()
	})
	for _, tc := range scopedCases {
		if !logged(tc, requests) {
			t.Errorf("no access-log line for %s from %s/client (%s) with status %d, namespace and pod:\n%s", tc.host, tc.ns, ips[tc.ns], tc.code, strings.Join(logs, "\n"))
		}
	}
}

// testScoping: the agent (--kubernetes) decides each pod's requests by the
// EgressRules of its namespace plus the global ones (egressd-system's and
// the ConfigMap's), and follows changes through the API.
func testScoping(t *testing.T, c *cluster, up *upstream, from netip.Addr) {
	for _, ns := range []string{nsA, nsB} {
		c.kubectl("create", "namespace", ns)
	}
	c.kubectlIn([]byte(egressRule(nsA, "a", hostA)+"---\n"+egressRule(nsB, "b", hostB)+"---\n"+
		egressRule("egressd-system", "global", hostGlobal)), "apply", "-f", "-")
	for _, ns := range []string{nsA, nsB} {
		c.kubectlIn([]byte(c.clientPod(ns, "client", "")), "apply", "-f", "-")
	}
	for _, ns := range []string{nsA, nsB} {
		c.waitReady(ns, "pod/client", 2*time.Minute)
	}

	t.Run("each namespace its own rules and the global ones", func(t *testing.T) {
		c := c.with(t)
		expectScoped(t, c, up, from)
		checkAccessLog(t, c)
	})

	t.Run("kubectl apply opens for its namespace within 2s, delete closes", func(t *testing.T) {
		c := c.with(t)
		expect(t, c, up, from, nsA, hostNew, 403)
		poll := c.streamCodes(t, nsA, "client", "http://"+hostNew+"/")
		poll.waitFor(t, "403", time.Now().Add(30*time.Second))
		c.kubectlIn([]byte(egressRule(nsA, "new", hostNew)), "apply", "-f", "-")
		applied := time.Now()
		if !poll.waitFor(t, "200", applied.Add(2*time.Second)) {
			t.Fatalf("%s's pod got no 200 for %s within 2 s of kubectl apply", nsA, hostNew)
		}
		t.Logf("opened %v after kubectl apply returned", time.Since(applied).Round(10*time.Millisecond))
		poll.stop(t)
		expect(t, c, up, from, nsB, hostNew, 403)

		poll = c.streamCodes(t, nsA, "client", "http://"+hostNew+"/")
		poll.waitFor(t, "200", time.Now().Add(30*time.Second))
		c.kubectl("-n", nsA, "delete", "egressrule", "new")
		deleted := time.Now()
		if !poll.waitFor(t, "403", deleted.Add(2*time.Second)) {
			t.Fatalf("%s's pod still not refused %s 2 s after kubectl delete", nsA, hostNew)
		}
		poll.stop(t)
		expect(t, c, up, from, nsA, hostNew, 403)
	})

	t.Run("a rule CEL cannot check: refused by the agent, last good set stays", func(t *testing.T) {
		c := c.with(t)
		// Port 80 of a.e2e.test as HTTPS, beside rule a's HTTP: each object
		// is valid (the API server stores it), the pair is not.
		conflict := strings.Replace(egressRule(nsA, "a-https", hostA), "protocol: http", "protocol: https", 1)
		c.kubectlIn([]byte(conflict), "apply", "-f", "-")
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(agentMetrics(t), `egressd_rules_last_reload_failed{namespace="`+nsA+`"} 1`) {
			if time.Now().After(deadline) {
				t.Fatalf("no egressd_rules_last_reload_failed 1 for %s 30 s after the conflicting rule:\n%s", nsA, agentMetrics(t))
			}
			time.Sleep(200 * time.Millisecond)
		}
		if m := agentMetrics(t); !regexp.MustCompile(`egressd_rules_reloads_total\{namespace="` + nsA + `",result="refused"\} [1-9]`).MatchString(m) {
			t.Errorf("no refused reload counted for %s:\n%s", nsA, m)
		}
		agent := mustAgent(t, c)
		if logs := c.kubectl("-n", "egressd-system", "logs", agent); !strings.Contains(logs, "a-https") {
			t.Errorf("the agent's log does not name the refused rule a-https:\n%s", logs)
		}
		expectScoped(t, c, up, from) // the last good set: a.e2e.test still HTTP for team-a
		c.kubectl("-n", nsA, "delete", "egressrule", "a-https")
		deadline = time.Now().Add(30 * time.Second)
		for !strings.Contains(agentMetrics(t), `egressd_rules_last_reload_failed{namespace="`+nsA+`"} 0`) {
			if time.Now().After(deadline) {
				t.Fatalf("%s's rules still refused 30 s after the conflicting rule was deleted", nsA)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})

	t.Run("a pod that connects at once is decided by its namespace", func(t *testing.T) {
		c := c.with(t)
		// Its first request is for its namespace's host: decided by the
		// global rules alone (the pod not yet known) it would be 403.
		c.kubectlIn([]byte(c.clientPod(nsB, "eager", "fetch http://"+hostB+"/; fetch http://"+hostA+"/")), "apply", "-f", "-")
		defer c.kubectl("-n", nsB, "delete", "pod", "eager", "--wait=false")
		c.kubectl("-n", nsB, "wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/eager", "--timeout=2m")
		logs := c.kubectl("-n", nsB, "logs", "eager")
		codes := statusLine.FindAllStringSubmatch(logs, -1)
		if len(codes) != 2 || codes[0][1] != "200" || codes[1][1] != "403" {
			t.Fatalf("the eager pod's requests (%s, then %s): want 200 then 403:\n%s", hostB, hostA, logs)
		}
	})

	t.Run("agent restart keeps the per-namespace rules", func(t *testing.T) {
		c := c.with(t)
		old, oldUID := c.agentPod()
		c.kubectl("-n", "egressd-system", "delete", "pod", old, "--wait=false")
		deadline := time.Now().Add(2 * time.Minute)
		var name string
		for {
			var uid string
			if name, uid = c.agentPod(); name != "" && uid != oldUID {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no new agent pod after 2 min")
			}
			time.Sleep(500 * time.Millisecond)
		}
		c.waitReady("egressd-system", "pod/"+name, 2*time.Minute)
		expectScoped(t, c, up, from)
	})
}

// agentMetrics is the node's agent's /metrics (its admin port, on the
// host's loopback: the agent has the host network).
func agentMetrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://127.0.0.1:15090/metrics")
	if err != nil {
		t.Fatalf("agent metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// codeStream is a loop in a pod fetching a URL back to back, its status
// codes read as they come.
type codeStream struct {
	cmd   *exec.Cmd
	c     *cluster
	ns    string
	pod   string
	codes chan string
}

func (c *cluster) streamCodes(t *testing.T, ns, pod, url string) *codeStream {
	t.Helper()
	c.kubectl("-n", ns, "exec", pod, "--", "rm", "-f", "/tmp/stop-stream")
	script := fmt.Sprintf(`i=0; while [ ! -e /tmp/stop-stream ] && [ $i -lt 1200 ]; do
  s=$(fetch -t 1s %s | sed -n 's/^HTTP \([0-9]*\).*/\1/p')
  echo "code ${s:-0}"; i=$((i+1)); sleep 0.05; done`, url)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, c.kubectlBin, "--kubeconfig", c.kubeconfig, "-n", ns, "exec", pod, "--", "sh", "-c", script)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &codeStream{cmd: cmd, c: c, ns: ns, pod: pod, codes: make(chan string, 4096)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "code" {
				s.codes <- f[1]
			}
		}
		close(s.codes)
	}()
	return s
}

// waitFor reads codes until one is want (true) or the deadline passes.
func (s *codeStream) waitFor(t *testing.T, want string, deadline time.Time) bool {
	t.Helper()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		select {
		case code, ok := <-s.codes:
			if !ok {
				t.Fatal("the fetch loop ended")
			}
			if code == want {
				return true
			}
		case <-timer.C:
			return false
		}
	}
}

func (s *codeStream) stop(t *testing.T) {
	t.Helper()
	s.c.kubectl("-n", s.ns, "exec", s.pod, "--", "touch", "/tmp/stop-stream")
	for range s.codes {
	}
	s.cmd.Wait()
}
