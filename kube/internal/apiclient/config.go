package apiclient

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

// In-cluster service account files, and how long a token read from a
// file is used before it is read again (bound tokens rotate; client-go
// re-reads every minute).
const (
	serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"
	tokenReread       = time.Minute
)

// config is what a Client needs: the server's URL, the TLS config and
// where the bearer token comes from.
type config struct {
	server string
	tls    *tls.Config
	token  *tokenSource // nil: no token
}

type kubeconfig struct {
	CurrentContext string `yaml:"current-context"`
	Clusters       []struct {
		Name    string         `yaml:"name"`
		Cluster map[string]any `yaml:"cluster"`
	} `yaml:"clusters"`
	Users []struct {
		Name string         `yaml:"name"`
		User map[string]any `yaml:"user"`
	} `yaml:"users"`
	Contexts []struct {
		Name    string `yaml:"name"`
		Context struct {
			Cluster string `yaml:"cluster"`
			User    string `yaml:"user"`
		} `yaml:"context"`
	} `yaml:"contexts"`
}

// Supported fields of a kubeconfig's cluster and user; any other is an
// error, naming it.
var (
	clusterFields = map[string]bool{"server": true, "certificate-authority": true, "certificate-authority-data": true,
		"insecure-skip-tls-verify": true, "tls-server-name": true, "extensions": true}
	userFields = map[string]bool{"token": true, "tokenFile": true, "client-certificate": true, "client-certificate-data": true,
		"client-key": true, "client-key-data": true, "extensions": true}
)

// loadKubeconfig reads the kubeconfig file path: its current context (or
// its only one).
func loadKubeconfig(path string) (*config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var kc kubeconfig
	if err := yaml.Unmarshal(data, &kc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	name := kc.CurrentContext
	if name == "" {
		if len(kc.Contexts) != 1 {
			return nil, fmt.Errorf("%s: no current-context, and %d contexts", path, len(kc.Contexts))
		}
		name = kc.Contexts[0].Name
	}
	var cluster, user map[string]any
	var clusterName, userName string
	found := false
	for _, c := range kc.Contexts {
		if c.Name == name {
			clusterName, userName, found = c.Context.Cluster, c.Context.User, true
		}
	}
	if !found {
		return nil, fmt.Errorf("%s: context %q not found", path, name)
	}
	for _, c := range kc.Clusters {
		if c.Name == clusterName {
			cluster = c.Cluster
		}
	}
	for _, u := range kc.Users {
		if u.Name == userName {
			user = u.User
		}
	}
	if cluster == nil {
		return nil, fmt.Errorf("%s: cluster %q of context %q not found", path, clusterName, name)
	}
	f := fields{dir: filepath.Dir(path), where: path + ": cluster " + clusterName}
	cfg, err := f.cluster(cluster)
	if err != nil {
		return nil, err
	}
	f.where = path + ": user " + userName
	if err := f.user(cfg, user); err != nil {
		return nil, err
	}
	return cfg, nil
}

// fields reads a kubeconfig's cluster or user entry; where names it in
// errors, dir resolves relative paths.
type fields struct{ dir, where string }

func (f fields) check(m map[string]any, known map[string]bool) error {
	for k := range m {
		if !known[k] {
			return fmt.Errorf("%s: %s is not supported by egressd", f.where, k)
		}
	}
	return nil
}

func (f fields) str(m map[string]any, k string) (string, error) {
	v, ok := m[k]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%s: %s is not a string", f.where, k)
	}
	return s, nil
}

// bytes reads field k (a path, resolved against dir) or k-data (base64).
func (f fields) bytes(m map[string]any, k string) ([]byte, error) {
	if d, err := f.str(m, k+"-data"); err != nil || d != "" {
		if err != nil {
			return nil, err
		}
		b, err := base64.StdEncoding.DecodeString(d)
		if err != nil {
			return nil, fmt.Errorf("%s: %s-data: %w", f.where, k, err)
		}
		return b, nil
	}
	p, err := f.str(m, k)
	if err != nil || p == "" {
		return nil, err
	}
	b, err := os.ReadFile(f.path(p))
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", f.where, k, err)
	}
	return b, nil
}

func (f fields) path(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(f.dir, p)
}

func (f fields) cluster(m map[string]any) (*config, error) {
	if err := f.check(m, clusterFields); err != nil {
		return nil, err
	}
	server, err := f.str(m, "server")
	if err != nil {
		return nil, err
	}
	if server == "" {
		return nil, fmt.Errorf("%s: no server", f.where)
	}
	cfg := &config{server: strings.TrimSuffix(server, "/"), tls: &tls.Config{MinVersion: tls.VersionTLS12}}
	if cfg.tls.ServerName, err = f.str(m, "tls-server-name"); err != nil {
		return nil, err
	}
	if v, ok := m["insecure-skip-tls-verify"]; ok {
		b, ok := v.(bool)
		if !ok {
			return nil, fmt.Errorf("%s: insecure-skip-tls-verify is not a boolean", f.where)
		}
		cfg.tls.InsecureSkipVerify = b
	}
	ca, err := f.bytes(m, "certificate-authority")
	if err != nil {
		return nil, err
	}
	if ca != nil {
		if cfg.tls.RootCAs, err = pool(ca); err != nil {
			return nil, fmt.Errorf("%s: certificate-authority: %w", f.where, err)
		}
	}
	return cfg, nil
}

func (f fields) user(cfg *config, m map[string]any) error {
	if err := f.check(m, userFields); err != nil {
		return err
	}
	token, err := f.str(m, "token")
	if err != nil {
		return err
	}
	file, err := f.str(m, "tokenFile")
	if err != nil {
		return err
	}
	switch {
	case token != "":
		cfg.token = &tokenSource{token: token}
	case file != "":
		cfg.token = &tokenSource{file: f.path(file)}
	}
	cert, err := f.bytes(m, "client-certificate")
	if err != nil {
		return err
	}
	key, err := f.bytes(m, "client-key")
	if err != nil {
		return err
	}
	if (cert == nil) != (key == nil) {
		return fmt.Errorf("%s: client-certificate and client-key go together", f.where)
	}
	if cert != nil {
		pair, err := tls.X509KeyPair(cert, key)
		if err != nil {
			return fmt.Errorf("%s: client certificate: %w", f.where, err)
		}
		cfg.tls.Certificates = []tls.Certificate{pair}
	}
	return nil
}

func pool(pem []byte) (*x509.CertPool, error) {
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		return nil, errors.New("no PEM certificate")
	}
	return p, nil
}

// inCluster is the pod's service account's config: the API server of
// $KUBERNETES_SERVICE_HOST and _PORT, the account's CA and token (read
// again every minute) in dir.
func inCluster(dir string, getenv func(string) string) (*config, error) {
	host, port := getenv("KUBERNETES_SERVICE_HOST"), getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, errors.New("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT not set")
	}
	ca, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, err
	}
	cfg := &config{server: "https://" + net.JoinHostPort(host, port), tls: &tls.Config{MinVersion: tls.VersionTLS12},
		token: &tokenSource{file: filepath.Join(dir, "token")}}
	if cfg.tls.RootCAs, err = pool(ca); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "ca.crt"), err)
	}
	if _, err := cfg.token.get(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// tokenSource is a fixed token, or one read from file and read again
// once older than tokenReread.
type tokenSource struct {
	token string
	file  string

	mu   sync.Mutex
	read time.Time
	now  func() time.Time // tests; nil: time.Now
}

func (s *tokenSource) get() (string, error) {
	if s.file == "" {
		return s.token, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now
	if s.now != nil {
		now = s.now
	}
	if s.token != "" && now().Sub(s.read) < tokenReread {
		return s.token, nil
	}
	b, err := os.ReadFile(s.file)
	if err != nil {
		if s.token != "" {
			return s.token, nil // keep the last one; the server says if it expired
		}
		return "", fmt.Errorf("token: %w", err)
	}
	s.token, s.read = strings.TrimSpace(string(b)), now()
	return s.token, nil
}
