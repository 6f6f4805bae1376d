//go:build k8s

package k8s

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// repoRoot is the repository, two levels above this package.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// env reads scripts/k8s-env.sh's plain KEY=value lines (the names and
// addresses the scripts use), ignoring ones with a default or expansion.
func env(t testing.TB) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(t), "scripts", "k8s-env.sh"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line := regexp.MustCompile(`^(K8S_[A-Z0-9_]+)=([^\s$#]+)`)
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := line.FindStringSubmatch(sc.Text()); m != nil {
			vars[m[1]] = m[2]
		}
	}
	return vars
}

// cluster is a running single-node cluster.
type cluster struct {
	t          testing.TB
	repo       string
	kubectlBin string
	kubeconfig string
	vars       map[string]string
}

// with returns c reporting to t (a subtest's).
func (c *cluster) with(t testing.TB) *cluster {
	c2 := *c
	c2.t = t
	return &c2
}

// startCluster runs scripts/k8s-up.sh and registers scripts/k8s-down.sh,
// printing the components' log tails first when the test failed.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	repo := repoRoot(t)
	c := &cluster{t: t, repo: repo, vars: env(t)}
	build := exec.Command(filepath.Join(repo, "scripts", "k8s-build.sh"))
	build.Stderr = os.Stderr
	dir, err := build.Output()
	if err != nil {
		t.Fatalf("scripts/k8s-build.sh: %v", err)
	}
	c.kubectlBin = filepath.Join(strings.TrimSpace(string(dir)), "kubectl")
	t.Cleanup(func() {
		if t.Failed() {
			c.dumpLogs()
		}
		down := exec.Command(filepath.Join(repo, "scripts", "k8s-down.sh"))
		if out, err := down.CombinedOutput(); err != nil {
			t.Errorf("scripts/k8s-down.sh: %v\n%s", err, out)
		}
	})
	up := exec.Command(filepath.Join(repo, "scripts", "k8s-up.sh"))
	up.Stderr = os.Stderr
	out, err := up.Output()
	if err != nil {
		t.Fatalf("scripts/k8s-up.sh: %v", err)
	}
	c.kubeconfig = strings.TrimSpace(string(out))
	return c
}

func (c *cluster) dumpLogs() {
	c.t.Logf("--- cluster state at failure")
	for _, args := range [][]string{
		{"get", "pods", "-A", "-o", "wide"},
		{"get", "events", "-A", "--sort-by=.lastTimestamp"},
		{"-n", "egressd-system", "logs", "-l", "app.kubernetes.io/name=egressd", "--tail=40"},
	} {
		out, _ := c.kubectlCtx(context.Background(), nil, args...)
		c.t.Logf("kubectl %s:\n%s", strings.Join(args, " "), out)
	}
	logs, _ := filepath.Glob("/run/egressd-k8s/logs/*.log")
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		if len(b) > 3000 {
			b = b[len(b)-3000:]
		}
		c.t.Logf("--- %s (tail):\n%s", l, b)
	}
}

// kubectl runs kubectl with args (stdin: none) and fails the test on error.
func (c *cluster) kubectl(args ...string) string {
	c.t.Helper()
	return c.kubectlIn(nil, args...)
}

func (c *cluster) kubectlIn(stdin []byte, args ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := c.kubectlCtx(ctx, stdin, args...)
	if err != nil {
		c.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (c *cluster) kubectlCtx(ctx context.Context, stdin []byte, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.kubectlBin, append([]string{"--kubeconfig", c.kubeconfig}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// waitPodsReady waits for every pod matching selector in ns to be Ready.
func (c *cluster) waitReady(ns, what string, timeout time.Duration) {
	c.t.Helper()
	c.kubectl("-n", ns, "wait", "--for=condition=Ready", what, "--timeout="+timeout.String())
}

// agentPod returns the name and UID of the egressd pod that is not being
// deleted, or "" while there is none.
func (c *cluster) agentPod() (name, uid string) {
	c.t.Helper()
	out := c.kubectl("-n", "egressd-system", "get", "pods", "-l", "app.kubernetes.io/name=egressd", "-o",
		`jsonpath={range .items[*]}{.metadata.name} {.metadata.uid} {.metadata.deletionTimestamp}{"\n"}{end}`)
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) == 2 { // a third field: being deleted
			return f[0], f[1]
		}
	}
	return "", ""
}

// httpGet fetches url from inside pod with scripts/fetch and returns the
// status code, 0 when no HTTP answer came (the reason in body).
func (c *cluster) httpGet(pod, url string) (code int, body string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := c.kubectlCtx(ctx, nil, "exec", pod, "--", "fetch", url)
	return parseFetch(out)
}

var statusLine = regexp.MustCompile(`(?m)^HTTP (\d{3})$`)

// parseFetch reads fetch's output: the status line's code (0 if none) and
// the output.
func parseFetch(out string) (int, string) {
	m := statusLine.FindStringSubmatch(out)
	if m == nil {
		return 0, out
	}
	var code int
	fmt.Sscan(m[1], &code)
	return code, out
}

// waitLog follows a pod's log (kubectl logs -f) until done accepts the
// lines read so far, or timeout passes; it returns the lines and whether
// done accepted them. For the access log, which egressd writes in batches
// (every 100 ms): a line is there some time after its request, not at once.
func (c *cluster) waitLog(ns, pod string, timeout time.Duration, done func(lines []string) bool) ([]string, bool) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.kubectlBin, "--kubeconfig", c.kubeconfig, "-n", ns, "logs", "-f", pod)
	out, err := cmd.StdoutPipe()
	if err != nil {
		c.t.Fatalf("kubectl logs -f %s/%s: %v", ns, pod, err)
	}
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("kubectl logs -f %s/%s: %v", ns, pod, err)
	}
	defer cmd.Wait()
	defer cancel() // before Wait: ends the follow
	var lines []string
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if done(lines) {
			return lines, true
		}
	}
	return lines, done(lines)
}
