package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/egressd/egressd/kube/exempt"
	"github.com/egressd/egressd/kube/pods"
	"github.com/egressd/egressd/redirect"
)

// nopMap is an exempt-cgroup map that keeps nothing: the endpoint reads
// the Controller's own view.
type nopMap struct{}

func (nopMap) SetExempt(uint64, string, redirect.ExemptReason, bool) error  { return nil }
func (nopMap) ReplaceExempt(redirect.ExemptReason, map[uint64]string) error { return nil }

// TestExplainPod: egressd explain --pod asks the admin endpoint and says
// exempt (with the reason), governed (naming an ignored label) or unknown.
func TestExplainPod(t *testing.T) {
	cfg := podExemptConfig{LabelNamespaces: []string{"infra"}, SystemNamespace: "egressd-system"}
	ep := &exemptEndpoint{}
	mux := http.NewServeMux()
	ep.register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	admin := strings.TrimPrefix(srv.URL, "http://")

	var out, errOut bytes.Buffer
	if err := explainPod(admin, "infra/backup", &out, &errOut); exitCode(err, &errOut) != exitFailure ||
		!strings.Contains(out.String(), "does not watch pods") {
		t.Fatalf("agent without --kubernetes: %v\n%s%s", err, out.String(), errOut.String())
	}

	c := exempt.New(cfg.policy(), nopMap{}, nil)
	ep.ctrl.Store(c)
	label := map[string]string{exempt.LabelExempt: "true"}
	c.Handle(pods.Event{New: &pods.Pod{Namespace: "infra", Name: "backup", UID: "u1", Labels: label, Cgroups: map[uint64]string{1: "/k/pod-u1"}}})
	c.Handle(pods.Event{New: &pods.Pod{Namespace: "team-a", Name: "web", UID: "u2", Labels: label, Cgroups: map[uint64]string{2: "/k/pod-u2"}}})
	c.Handle(pods.Event{New: &pods.Pod{Namespace: "egressd-system", Name: "gw", UID: "u3", Labels: map[string]string{exempt.LabelGateway: "true"}}})
	for _, tc := range []struct {
		pod, want string
		code      int
	}{
		{"infra/backup", "exempt   infra/backup reason=label: label egressd.io/exempt=true in namespace infra, which --exempt-label-namespace lists; not redirected", 0},
		{"team-a/web", "governed team-a/web: label egressd.io/exempt=true ignored: namespace team-a is not listed", 0},
		{"egressd-system/gw", "exempt   egressd-system/gw reason=gateway: label egressd.io/gateway=true in egressd's namespace egressd-system; its cgroup is not made yet", 0},
		{"team-a/gone", "unknown  team-a/gone: no pod team-a/gone on this node", exitFailure},
	} {
		out.Reset()
		errOut.Reset()
		err := explainPod(admin, tc.pod, &out, &errOut)
		if code := exitCode(err, &errOut); code != tc.code || !strings.HasPrefix(out.String(), tc.want) {
			t.Errorf("explain --pod %s: exit %d (want %d)\n%s%s\nwant %q", tc.pod, code, tc.code, out.String(), errOut.String(), tc.want)
		}
	}
	if err := explainPod(admin, "Bad_NS/x", &out, &errOut); exitCode(err, &errOut) != exitUsage {
		t.Errorf("bad pod name: %v, want a usage error", err)
	}
	if err := explainPod("127.0.0.1:1", "infra/backup", &out, &errOut); exitCode(err, &errOut) != exitFailure {
		t.Errorf("no agent: %v, want exit 1", err)
	}
}

func TestParseNamespace(t *testing.T) {
	for _, ok := range []string{"kube-system", "a", "e2e-infra", strings.Repeat("a", 63)} {
		if _, err := parseNamespace(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Kube", "-a", "a-", "a_b", "a.b", strings.Repeat("a", 64)} {
		if _, err := parseNamespace(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// The namespace exemptions need the pod watcher; bad names are usage
// errors; with --kubernetes they parse.
func TestExemptPodFlags(t *testing.T) {
	base := []string{"--rules", "r", "--cgroup", "c"}
	k8s := append([]string{"--kubernetes", "--node-name", "n"}, base...)
	for _, args := range [][]string{
		append([]string{"--exempt-namespace", "kube-system"}, base...),
		append([]string{"--exempt-label-namespace", "infra"}, base...),
		append([]string{"--exempt-namespace", "Kube_System"}, k8s...),
		append([]string{"--system-namespace", "a.b"}, k8s...),
	} {
		if _, err := parseRunFlags(args, env(), io.Discard); exitCode(err, io.Discard) != exitUsage {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
	cfg, err := parseRunFlags(k8s, env("EGRESSD_EXEMPT_NAMESPACE", "kube-system,infra-agents", "EGRESSD_EXEMPT_LABEL_NAMESPACE", "infra"), io.Discard)
	if err != nil || !slices.Equal(cfg.PodExempt.Namespaces, []string{"kube-system", "infra-agents"}) || !slices.Equal(cfg.PodExempt.LabelNamespaces, []string{"infra"}) {
		t.Fatalf("cfg %+v, err %v", cfg.PodExempt, err)
	}
	if p := cfg.PodExempt.policy(); p.SystemNamespace == "" {
		t.Error("no system namespace by default")
	}
}
