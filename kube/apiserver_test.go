package kube

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/egressd/egressd/cgroupid"
	"github.com/egressd/egressd/internal/kubetest"
	"github.com/egressd/egressd/kube/internal/apiclient"
	"github.com/egressd/egressd/kube/pods"
	"github.com/egressd/egressd/rules"
)

// TestAPIServer runs the informers of Rules and pods.Watcher against a
// real kube-apiserver and etcd on loopback (ports 21600-21602), with the
// EgressRule CRD of deploy/ applied: objects created, updated, refused
// and deleted through the API reach the per-namespace rules; pods of this
// node (and not of another) reach the Watcher, and a cgroup named after
// a pod's UID is found as that pod. It needs etcd in PATH and
// kube-apiserver from scripts/k8s-build.sh's cache
// (/var/cache/egressd/k8s/<version>/, or $EGRESSD_KUBE_APISERVER), and
// runs only when EGRESSD_E2E is set (scripts/test.sh), as it takes some
// seconds to start; without the binaries it skips, saying so.
func TestAPIServer(t *testing.T) {
	kubetest.Require(t)
	srv := kubetest.Start(t, 21600, "") // kubetest.MinimalCRD: the agent's checks, not the CRD's
	client := srv.Client                // the test's writes
	api, err := Client(srv.Kubeconfig)  // the agent's reads, as --kubeconfig gives them
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for _, ns := range []string{"team-a", "team-b", "egressd"} {
		srv.Create(t, schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}, "", map[string]any{
			"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}})
	}

	// Rules: the file rules allow global.example; team-a's and team-b's
	// objects come through the API.
	files, _, err := rules.LoadDocuments(rules.Document{Source: "files", Data: []byte(globalFile)})
	if err != nil {
		t.Fatal(err)
	}
	var logBuf syncBuffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	changed := make(chan struct{}, 64)
	kr, err := NewRules(RulesOptions{Client: api, Files: fixedSource{files}, GlobalNamespace: "egressd", Logger: log,
		OnChange: func() { changed <- struct{}{} }})
	if err != nil {
		t.Fatal(err)
	}
	// One object exists before the agent starts: the first list has it.
	createRule(t, srv, "team-a", "a", "a.example", 80, "HTTP")
	go kr.Run(ctx)
	sctx, scancel := context.WithTimeout(ctx, time.Minute)
	defer scancel()
	if err := kr.WaitSynced(sctx); err != nil {
		t.Fatal(err)
	}
	a, b := kr.For("team-a"), kr.For("team-b")
	if !allows(a, "a.example", 80) {
		t.Fatal("the object listed at start is not in force once synced")
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		// A refusal changes no rules, so nothing is sent on changed for
		// it: look again now and then too.
		recheck := time.NewTicker(20 * time.Millisecond)
		defer recheck.Stop()
		for !cond() {
			select {
			case <-changed:
			case <-recheck.C:
			case <-deadline:
				t.Fatalf("%s: not in force 30 s after the API call; log:\n%s", what, logBuf.String())
			}
		}
	}
	createRule(t, srv, "team-b", "b", "b.example", 443, "HTTPS")
	waitFor("team-b's new rule", func() bool { return allows(b, "b.example", 443) })
	if allows(a, "b.example", 443) || allows(b, "a.example", 80) {
		t.Fatal("one namespace's rule applies to the other's pods")
	}
	createRule(t, srv, "egressd", "all", "all.example", 80, "HTTP")
	waitFor("the global namespace's rule", func() bool {
		return allows(a, "all.example", 80) && allows(b, "all.example", 80) && allows(kr.Global(), "all.example", 80)
	})

	// An object the CRD accepts but the agent refuses (it clashes with
	// another of its namespace): logged, counted, the last good set stays.
	before := kr.namespace("team-a").Stats().Failures
	createRule(t, srv, "team-a", "clash", "a.example", 80, "HTTPS")
	waitFor("the refusal", func() bool { return kr.namespace("team-a").Stats().Failures > before })
	if !allows(a, "a.example", 80) || !strings.Contains(logBuf.String(), "EgressRule refused") || !strings.Contains(logBuf.String(), "name=clash") {
		t.Fatalf("after the clash: a.example allowed %v; log:\n%s", allows(a, "a.example", 80), logBuf.String())
	}
	if m, _ := a.Current().Match("a.example", 80); m.Port.Protocol != rules.HTTP {
		t.Fatalf("a.example:80 is %v now; the refused object displaced the good one", m.Port.Protocol)
	}
	// explain --namespace lists the same: the clash named as refused.
	listed, refused, err := NamespaceRules(ctx, api, "team-a")
	if err == nil {
		t.Fatalf("NamespaceRules compiled a namespace whose objects clash (%d rules)", listed.Len())
	}
	if len(refused) != 0 || !strings.Contains(err.Error(), "443") && !strings.Contains(err.Error(), "80") {
		t.Fatalf("NamespaceRules: refused %v, err %v", refused, err)
	}
	// Deleting an object closes what it opened.
	if err := client.Resource(gvr(EgressRuleGVR)).Namespace("team-a").Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The refused object is tried again: with a gone, it fits.
	waitFor("the deletion", func() bool { return isHTTPS(a) })
	if err := client.Resource(gvr(EgressRuleGVR)).Namespace("team-a").Delete(ctx, "clash", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("the second deletion", func() bool { return !allows(a, "a.example", 80) })

	// Pods: only this node's, found by the UID in a cgroup path.
	root := filepath.Join(t.TempDir(), "kubepods")
	w, err := pods.New(pods.Options{Client: api, NodeName: "node-1", Roots: []string{root}, Logger: log, Wait: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan pods.Event, 64)
	w.Subscribe(func(e pods.Event) { events <- e })
	go w.Run(ctx)
	if err := w.WaitSynced(sctx); err != nil {
		t.Fatal(err)
	}
	mine := createPod(t, srv, "team-a", "client", "node-1")
	theirs := createPod(t, srv, "team-b", "elsewhere", "node-2")
	ctr := mkdirID(t, filepath.Join(root, "besteffort", "pod"+mine, "ctr"))
	other := mkdirID(t, filepath.Join(root, "besteffort", "pod"+theirs, "ctr"))
	p, err := w.Lookup(ctr)
	if err != nil || p.Namespace != "team-a" || p.Name != "client" {
		t.Fatalf("Lookup of this node's pod's cgroup = %+v, %v", p, err)
	}
	var unknown *pods.UnknownPodError
	if _, err := w.Lookup(other); !errors.As(err, &unknown) {
		t.Fatalf("a pod of another node: err %v, want UnknownPodError (not watched)", err)
	}
	sc := NewScoper(w, kr, log).Scope(ctr)
	if sc.Namespace != "team-a" || sc.Pod != "client" || !allows(sc.Rules, "global.example", 80) || allows(sc.Rules, "b.example", 443) {
		t.Fatalf("Scope of team-a's pod: %+v", sc)
	}
	// A label change and the deletion reach a subscriber.
	pod, err := client.Resource(gvr(pods.GVR)).Namespace("team-a").Get(ctx, "client", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.SetLabels(map[string]string{"egressd.io/exempt": "true"})
	if _, err := client.Resource(gvr(pods.GVR)).Namespace("team-a").Update(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, events, "the label", func(e pods.Event) bool {
		return e.New != nil && e.New.Name == "client" && e.New.Labels["egressd.io/exempt"] == "true"
	})
	zero := int64(0)
	if err := client.Resource(gvr(pods.GVR)).Namespace("team-a").Delete(ctx, "client", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, events, "the deletion", func(e pods.Event) bool { return e.New == nil && e.Old != nil && e.Old.Name == "client" })
}

func isHTTPS(src rules.Source) bool {
	m, ok := src.Current().Match("a.example", 80)
	return ok && m.Port.Protocol == rules.HTTPS
}

func nextEvent(t *testing.T, events <-chan pods.Event, what string, ok func(pods.Event) bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case e := <-events:
			if ok(e) {
				return
			}
		case <-deadline:
			t.Fatalf("no event for %s within 30 s", what)
		}
	}
}

func mkdirID(t *testing.T, dir string) uint64 {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	id, _ := cgroupid.ID(dir)
	return id
}

// syncBuffer is a bytes.Buffer safe for the informers' goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func createRule(t *testing.T, srv *kubetest.Server, ns, name, service string, port int64, protocol string) {
	t.Helper()
	srv.Create(t, gvr(EgressRuleGVR), ns, map[string]any{
		"apiVersion": "config.istio.io/v1alpha2", "kind": "EgressRule",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{"destination": map[string]any{"service": service},
			"ports": []any{map[string]any{"port": port, "protocol": protocol}}},
	})
}

// createPod creates a pod bound to node (no scheduler runs) and returns
// its UID.
func createPod(t *testing.T, srv *kubetest.Server, ns, name, node string) string {
	t.Helper()
	u := srv.Create(t, gvr(pods.GVR), ns, map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{"nodeName": node,
			"containers": []any{map[string]any{"name": "c", "image": "egressd.invalid/client:1"}}},
	})
	return string(u.GetUID())
}

// gvr is r as client-go names it, for the test's own writes.
func gvr(r apiclient.Resource) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: r.Group, Version: r.Version, Resource: r.Resource}
}
