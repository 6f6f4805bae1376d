package kube

import (
	"fmt"
	"os"
	"strings"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// serviceAccountNamespace is where the kubelet writes the pod's namespace
// beside its service account token.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// FallbackGlobalNamespace is the global namespace when the agent cannot
// tell its own.
const FallbackGlobalNamespace = "egressd"

// Client returns a dynamic client for the API server: from the kubeconfig
// file, or the in-cluster config (the pod's service account) when
// kubeconfig is "".
func Client(kubeconfig string) (dynamic.Interface, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		if kubeconfig == "" {
			return nil, fmt.Errorf("kubernetes: in-cluster config: %w (outside a pod, give --kubeconfig)", err)
		}
		return nil, fmt.Errorf("kubernetes: %w", err)
	}
	cfg.UserAgent = "egressd"
	return dynamic.NewForConfig(cfg)
}

// DefaultGlobalNamespace is the agent's own namespace: the service
// account's namespace file, else $EGRESSD_POD_NAMESPACE, else
// FallbackGlobalNamespace.
func DefaultGlobalNamespace() string {
	return globalNamespace(serviceAccountNamespace, os.Getenv)
}

func globalNamespace(file string, getenv func(string) string) string {
	if b, err := os.ReadFile(file); err == nil {
		if ns := strings.TrimSpace(string(b)); ns != "" {
			return ns
		}
	}
	if ns := strings.TrimSpace(getenv("EGRESSD_POD_NAMESPACE")); ns != "" {
		return ns
	}
	return FallbackGlobalNamespace
}
