package kube

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/egressd/egressd/cgroupid"
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
	if os.Getenv("EGRESSD_E2E") == "" {
		t.Skip("EGRESSD_E2E not set: the API server test starts etcd and kube-apiserver")
	}
	apiserver := os.Getenv("EGRESSD_KUBE_APISERVER")
	if apiserver == "" {
		found, _ := filepath.Glob("/var/cache/egressd/k8s/*/kube-apiserver")
		found = append(found, mustGlob("/var/cache/egressd/k8s/*/bin/kube-apiserver")...)
		sort.Strings(found)
		if len(found) > 0 {
			apiserver = found[len(found)-1]
		}
	}
	etcd, err := exec.LookPath("etcd")
	if apiserver == "" || err != nil {
		t.Skipf("no kube-apiserver (build it with scripts/k8s-build.sh) or no etcd in PATH (%v)", err)
	}
	client := startAPIServer(t, etcd, apiserver)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	applyCRD(t, ctx, client)
	for _, ns := range []string{"team-a", "team-b", "egressd"} {
		create(t, ctx, client, schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}, "", map[string]any{
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
	kr, err := NewRules(RulesOptions{Client: client, Files: fixedSource{files}, GlobalNamespace: "egressd", Logger: log,
		OnChange: func() { changed <- struct{}{} }})
	if err != nil {
		t.Fatal(err)
	}
	// One object exists before the agent starts: the first list has it.
	createRule(t, ctx, client, "team-a", "a", "a.example", 80, "HTTP")
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
		for !cond() {
			select {
			case <-changed:
			case <-deadline:
				t.Fatalf("%s: not in force 30 s after the API call; log:\n%s", what, logBuf.String())
			}
		}
	}
	createRule(t, ctx, client, "team-b", "b", "b.example", 443, "HTTPS")
	waitFor("team-b's new rule", func() bool { return allows(b, "b.example", 443) })
	if allows(a, "b.example", 443) || allows(b, "a.example", 80) {
		t.Fatal("one namespace's rule applies to the other's pods")
	}
	createRule(t, ctx, client, "egressd", "all", "all.example", 80, "HTTP")
	waitFor("the global namespace's rule", func() bool {
		return allows(a, "all.example", 80) && allows(b, "all.example", 80) && allows(kr.Global(), "all.example", 80)
	})

	// An object the CRD accepts but the agent refuses (it clashes with
	// another of its namespace): logged, counted, the last good set stays.
	before := kr.namespace("team-a").Stats().Failures
	createRule(t, ctx, client, "team-a", "clash", "a.example", 80, "HTTPS")
	waitFor("the refusal", func() bool { return kr.namespace("team-a").Stats().Failures > before })
	if !allows(a, "a.example", 80) || !strings.Contains(logBuf.String(), "EgressRule refused") || !strings.Contains(logBuf.String(), "name=clash") {
		t.Fatalf("after the clash: a.example allowed %v; log:\n%s", allows(a, "a.example", 80), logBuf.String())
	}
	if m, _ := a.Current().Match("a.example", 80); m.Port.Protocol != rules.HTTP {
		t.Fatalf("a.example:80 is %v now; the refused object displaced the good one", m.Port.Protocol)
	}
	// Deleting an object closes what it opened.
	if err := client.Resource(EgressRuleGVR).Namespace("team-a").Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The refused object is tried again: with a gone, it fits.
	waitFor("the deletion", func() bool { return isHTTPS(a) })
	if err := client.Resource(EgressRuleGVR).Namespace("team-a").Delete(ctx, "clash", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("the second deletion", func() bool { return !allows(a, "a.example", 80) })

	// Pods: only this node's, found by the UID in a cgroup path.
	root := filepath.Join(t.TempDir(), "kubepods")
	w, err := pods.New(pods.Options{Client: client, NodeName: "node-1", Roots: []string{root}, Logger: log, Wait: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan pods.Event, 64)
	w.Subscribe(func(e pods.Event) { events <- e })
	go w.Run(ctx)
	if err := w.WaitSynced(sctx); err != nil {
		t.Fatal(err)
	}
	mine := createPod(t, ctx, client, "team-a", "client", "node-1")
	theirs := createPod(t, ctx, client, "team-b", "elsewhere", "node-2")
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
	pod, err := client.Resource(pods.GVR).Namespace("team-a").Get(ctx, "client", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.SetLabels(map[string]string{"egressd.io/exempt": "true"})
	if _, err := client.Resource(pods.GVR).Namespace("team-a").Update(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, events, "the label", func(e pods.Event) bool {
		return e.New != nil && e.New.Name == "client" && e.New.Labels["egressd.io/exempt"] == "true"
	})
	zero := int64(0)
	if err := client.Resource(pods.GVR).Namespace("team-a").Delete(ctx, "client", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
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

func mustGlob(pattern string) []string {
	m, _ := filepath.Glob(pattern)
	return m
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

// Loopback ports of the test (this work's range, 21600-21699).
const (
	etcdClientPort = 21600
	etcdPeerPort   = 21601
	apiserverPort  = 21602
)

// startAPIServer starts etcd and kube-apiserver (static token, AlwaysAllow,
// no service-account admission: no controller creates the default
// service account) and returns a client once /readyz answers.
func startAPIServer(t *testing.T, etcd, apiserver string) dynamic.Interface {
	t.Helper()
	dir := t.TempDir()
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdClientPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPeerPort)
	start(t, dir, "etcd", etcd, "--data-dir", filepath.Join(dir, "etcd"), "--name", "default",
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL, "--initial-cluster", "default="+peerURL)

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	saKey := filepath.Join(dir, "sa.pem")
	writeFile(t, saKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	tokens := filepath.Join(dir, "tokens.csv")
	writeFile(t, tokens, []byte("egressd-test-token,admin,admin,system:masters\n"))
	start(t, dir, "kube-apiserver", apiserver,
		"--etcd-servers", etcdURL, "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		"--secure-port", fmt.Sprint(apiserverPort), "--cert-dir", filepath.Join(dir, "certs"),
		"--token-auth-file", tokens, "--authorization-mode", "AlwaysAllow",
		"--service-account-issuer", "https://kubernetes.default.svc", "--service-account-key-file", saKey,
		"--service-account-signing-key-file", saKey, "--service-cluster-ip-range", "198.19.17.0/24",
		"--disable-admission-plugins", "ServiceAccount", "--endpoint-reconciler-type", "none",
		"--enable-priority-and-fairness=false")

	cfg := &rest.Config{Host: fmt.Sprintf("https://127.0.0.1:%d", apiserverPort), BearerToken: "egressd-test-token",
		TLSClientConfig: rest.TLSClientConfig{Insecure: true}, Timeout: 10 * time.Second}
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // its own throwaway certificate
	req, _ := http.NewRequest("GET", cfg.Host+"/readyz", nil)
	req.Header.Set("Authorization", "Bearer "+cfg.BearerToken)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var body []byte
		resp, err := hc.Do(req)
		if err == nil {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return client
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver not ready after 2 minutes: %v %s", err, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// start runs a server until the test ends, its output in dir/name.log
// (printed if the test fails).
func start(t *testing.T, dir, name, bin string, args ...string) {
	t.Helper()
	logFile := filepath.Join(dir, name+".log")
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		f.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logFile); err == nil {
				if len(b) > 4000 {
					b = b[len(b)-4000:]
				}
				t.Logf("%s log (tail):\n%s", name, b)
			}
		}
	})
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// applyCRD creates deploy/'s EgressRule CRD and waits until EgressRules
// can be listed.
func applyCRD(t *testing.T, ctx context.Context, client dynamic.Interface) {
	t.Helper()
	data, err := os.ReadFile("../deploy/crd-egressrule.yaml")
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	var u unstructured.Unstructured
	if err := u.UnmarshalJSON(js); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Resource(crdGVR).Create(ctx, &u, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := client.Resource(EgressRuleGVR).Namespace("default").List(ctx, metav1.ListOptions{})
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("EgressRules not served a minute after the CRD was created: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func create(t *testing.T, ctx context.Context, client dynamic.Interface, gvr schema.GroupVersionResource, ns string, obj map[string]any) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{Object: obj}
	r := client.Resource(gvr)
	var out *unstructured.Unstructured
	var err error
	if ns == "" {
		out, err = r.Create(ctx, u, metav1.CreateOptions{})
	} else {
		out, err = r.Namespace(ns).Create(ctx, u, metav1.CreateOptions{})
	}
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create %s %s/%s: %v", gvr.Resource, ns, u.GetName(), err)
	}
	return out
}

func createRule(t *testing.T, ctx context.Context, client dynamic.Interface, ns, name, service string, port int64, protocol string) {
	t.Helper()
	create(t, ctx, client, EgressRuleGVR, ns, map[string]any{
		"apiVersion": "config.istio.io/v1alpha2", "kind": "EgressRule",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{"destination": map[string]any{"service": service},
			"ports": []any{map[string]any{"port": port, "protocol": protocol}}},
	})
}

// createPod creates a pod bound to node (no scheduler runs) and returns
// its UID.
func createPod(t *testing.T, ctx context.Context, client dynamic.Interface, ns, name, node string) string {
	t.Helper()
	u := create(t, ctx, client, pods.GVR, ns, map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{"nodeName": node,
			"containers": []any{map[string]any{"name": "c", "image": "egressd.invalid/client:1"}}},
	})
	return string(u.GetUID())
}
