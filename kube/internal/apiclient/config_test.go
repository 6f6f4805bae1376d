package apiclient

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeKubeconfig(t *testing.T, cluster, user string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	data := "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {" + cluster + "}}]\n" +
		"users: [{name: u, user: {" + user + "}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestKubeconfigUnsupported: what egressd does not implement is an error
// naming the field, never ignored (an exec plugin ignored would mean
// requests without credentials).
func TestKubeconfigUnsupported(t *testing.T) {
	for _, c := range []struct{ cluster, user, want string }{
		{`server: "https://a"`, `exec: {command: x}`, "user u: exec is not supported"},
		{`server: "https://a"`, `auth-provider: {name: gcp}`, "user u: auth-provider is not supported"},
		{`server: "https://a"`, `username: a, password: b`, "is not supported"},
		{`server: "https://a", proxy-url: "http://p"`, `token: t`, "cluster c: proxy-url is not supported"},
		{`insecure-skip-tls-verify: true`, `token: t`, "cluster c: no server"},
		{`server: "https://a", certificate-authority: ca.pem`, `token: t`, "certificate-authority: open "},
		{`server: "https://a"`, `client-certificate-data: eA==`, "client-certificate and client-key go together"},
	} {
		_, err := New(writeKubeconfig(t, c.cluster, c.user))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("cluster {%s} user {%s}: %v, want %q", c.cluster, c.user, err, c.want)
		}
	}
}

// TestKubeconfigRelativeTokenFile: a relative path is the kubeconfig
// directory's, and the token goes out as a bearer token.
func TestKubeconfigRelativeTokenFile(t *testing.T) {
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("Authorization")
		w.Write([]byte(`{"metadata":{"resourceVersion":"1"},"items":[]}`))
	}))
	defer srv.Close()
	p := writeKubeconfig(t, `server: "`+srv.URL+`"`, `tokenFile: tok`)
	if err := os.WriteFile(filepath.Join(filepath.Dir(p), "tok"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := New(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.List(context.Background(), Resource{Version: "v1", Resource: "pods"}, "", ""); err != nil {
		t.Fatal(err)
	}
	if a := <-got; a != "Bearer s3cret" {
		t.Errorf("Authorization %q", a)
	}
}

// TestTokenRotation: a service account token file is read again once
// the token in hand is a minute old (the kubelet rotates bound tokens).
func TestTokenRotation(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	os.WriteFile(file, []byte("one"), 0o600)
	now := time.Unix(1000, 0)
	s := &tokenSource{file: file, now: func() time.Time { return now }}
	if tok, _ := s.get(); tok != "one" {
		t.Fatalf("token %q", tok)
	}
	os.WriteFile(file, []byte("two\n"), 0o600)
	now = now.Add(30 * time.Second)
	if tok, _ := s.get(); tok != "one" {
		t.Errorf("after 30 s: %q, want one still", tok)
	}
	now = now.Add(31 * time.Second)
	if tok, _ := s.get(); tok != "two" {
		t.Errorf("after 61 s: %q, want two (rotated)", tok)
	}
	os.Remove(file)
	now = now.Add(2 * time.Minute)
	if tok, err := s.get(); tok != "two" || err != nil {
		t.Errorf("file gone: %q, %v; want the last token", tok, err)
	}
}

// TestInCluster: the service's address, IPv6 too, and the account's
// files; outside a pod the error says to give --kubeconfig.
func TestInCluster(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
	if _, err := inCluster(dir, func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "ca.crt") {
		t.Errorf("no ca.crt: %v", err)
	}
	if _, err := inCluster(dir, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "KUBERNETES_SERVICE_HOST") {
		t.Errorf("no env: %v", err)
	}
	if _, err := New(""); err == nil || !strings.Contains(err.Error(), "(outside a pod, give --kubeconfig)") {
		t.Errorf("New(\"\") outside a pod: %v", err)
	}
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	os.WriteFile(filepath.Join(dir, "ca.crt"), pemCert(srv), 0o600)
	os.WriteFile(filepath.Join(dir, "token"), []byte("t"), 0o600)
	cfg, err := inCluster(dir, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.server != "https://[fd00::1]:443" {
		t.Errorf("server %s", cfg.server)
	}
}

func pemCert(srv *httptest.Server) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
}
