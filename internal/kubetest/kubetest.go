package kubetest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// EgressRuleGVR is the EgressRule resource (kube.EgressRuleGVR).
var EgressRuleGVR = schema.GroupVersionResource{Group: "config.istio.io", Version: "v1alpha2", Resource: "egressrules"}

// Server is a running API server.
type Server struct {
	Client     dynamic.Interface
	Kubeconfig string // a kubeconfig file naming it, for egressd --kubeconfig
}

// Binaries returns etcd's and kube-apiserver's paths, or why not.
func Binaries() (etcd, apiserver string, err error) {
	apiserver = os.Getenv("EGRESSD_KUBE_APISERVER")
	if apiserver == "" {
		found, _ := filepath.Glob("/var/cache/egressd/k8s/*/kube-apiserver")
		more, _ := filepath.Glob("/var/cache/egressd/k8s/*/bin/kube-apiserver")
		found = append(found, more...)
		sort.Strings(found)
		if len(found) == 0 {
			return "", "", fmt.Errorf("no kube-apiserver in /var/cache/egressd/k8s (scripts/k8s-build.sh builds it) and EGRESSD_KUBE_APISERVER unset")
		}
		apiserver = found[len(found)-1]
	}
	etcd, err = exec.LookPath("etcd")
	return etcd, apiserver, err
}

// Require skips t unless EGRESSD_E2E is set and the binaries are there
// (it starts servers for some seconds: not a unit test); with
// EGRESSD_E2E=require missing binaries fail t instead.
func Require(t *testing.T) {
	t.Helper()
	if os.Getenv("EGRESSD_E2E") == "" {
		t.Skip("EGRESSD_E2E not set: this test starts etcd and kube-apiserver")
	}
	if _, _, err := Binaries(); err != nil {
		if os.Getenv("EGRESSD_E2E") == "require" {
			// A skipped test is not a pass: .ci/run builds Kubernetes
			// before the suite; elsewhere name the test in go test -skip.
			t.Fatalf("EGRESSD_E2E=require and %v", err)
		}
		t.Skipf("API server test skipped: %v", err)
	}
}

// MinimalCRD is an EgressRule CRD without validation (the spec kept as
// given): tests of the agent use it so that they test what the agent
// accepts and refuses, not deploy/'s CEL rules.
const MinimalCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: egressrules.config.istio.io}
spec:
  group: config.istio.io
  scope: Namespaced
  names: {kind: EgressRule, listKind: EgressRuleList, plural: egressrules, singular: egressrule}
  versions:
    - name: v1alpha2
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
`

// Start starts etcd (ports base, base+1) and kube-apiserver (base+2) on
// 127.0.0.1 until the test ends, applies the CRD in crdFile (""
// MinimalCRD; deploy/crd-egressrule.yaml to test that one) and returns
// once EgressRules are served.
func Start(t *testing.T, base int, crdFile string) *Server {
	t.Helper()
	etcd, apiserver, err := Binaries()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", base)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", base+1)
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
	const token = "egressd-test-token"
	writeFile(t, tokens, []byte(token+",admin,admin,system:masters\n"))
	host := fmt.Sprintf("https://127.0.0.1:%d", base+2)
	start(t, dir, "kube-apiserver", apiserver,
		"--etcd-servers", etcdURL, "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		"--secure-port", fmt.Sprint(base+2), "--cert-dir", filepath.Join(dir, "certs"),
		"--token-auth-file", tokens, "--authorization-mode", "AlwaysAllow",
		"--service-account-issuer", "https://kubernetes.default.svc", "--service-account-key-file", saKey,
		"--service-account-signing-key-file", saKey, "--service-cluster-ip-range", "198.19.17.0/24",
		// No controller creates the namespaces' default service account.
		"--disable-admission-plugins", "ServiceAccount", "--endpoint-reconciler-type", "none",
		"--enable-priority-and-fairness=false")
	kubeconfig := filepath.Join(dir, "kubeconfig")
	writeFile(t, kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: admin, user: {token: %q}}]
contexts: [{name: test, context: {cluster: test, user: admin}}]
current-context: test
`, host, token)))

	cfg := &rest.Config{Host: host, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{Insecure: true}, Timeout: 10 * time.Second}
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // its own throwaway certificate
	req, _ := http.NewRequest("GET", host+"/readyz", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var body []byte
		resp, err := hc.Do(req)
		if err == nil {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver not ready after 2 minutes: %v %s", err, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	s := &Server{Client: client, Kubeconfig: kubeconfig}
	s.applyCRD(t, crdFile)
	return s
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
func (s *Server) applyCRD(t *testing.T, file string) {
	t.Helper()
	ctx, client := context.Background(), s.Client
	data := []byte(MinimalCRD)
	if file != "" {
		var err error
		if data, err = os.ReadFile(file); err != nil {
			t.Fatal(err)
		}
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

// Create creates obj (in namespace ns; "" for a cluster-wide resource); an
// object that exists already is fine (the result is then nil).
func (s *Server) Create(t *testing.T, gvr schema.GroupVersionResource, ns string, obj map[string]any) *unstructured.Unstructured {
	t.Helper()
	ctx, client := context.Background(), s.Client
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
