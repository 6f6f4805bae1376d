package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/egressd/egressd/cmd/egressd/internal/envflag"
	"github.com/egressd/egressd/kube"
	"github.com/egressd/egressd/kube/exempt"
	"github.com/egressd/egressd/kube/pods"
	"github.com/egressd/egressd/redirect"
)

// podExemptConfig is run's pod exemption flags (package kube/exempt).
type podExemptConfig struct {
	Namespaces      []string // --exempt-namespace
	LabelNamespaces []string // --exempt-label-namespace
	SystemNamespace string   // --system-namespace
}

// exemptPodFlags declares the pod exemption flags on fs.
func exemptPodFlags(fs *flag.FlagSet, cfg *podExemptConfig) {
	fs.Var(envflag.List(&cfg.Namespaces, parseNamespace), "exempt-namespace",
		"Kubernetes `namespace` whose pods are all left alone, as if not attached, e.g. kube-system (repeatable; with --kubernetes)")
	fs.Var(envflag.List(&cfg.LabelNamespaces, parseNamespace), "exempt-label-namespace",
		"Kubernetes `namespace` where a pod labelled "+exempt.LabelExempt+"=true is left alone (repeatable; with --kubernetes; the label is ignored in every other namespace, so that a tenant cannot exempt its own pods)")
	fs.StringVar(&cfg.SystemNamespace, "system-namespace", "",
		"egressd's own Kubernetes `namespace`, where pods labelled "+exempt.LabelGateway+"=true or "+exempt.LabelAgent+"=true (the gateway's and the agents') are left alone (with --kubernetes; default: the agent's namespace, as for --global-namespace)")
}

// check refuses exemptions by namespace without the pod watcher, which
// alone could apply them.
func (c *podExemptConfig) check(kubernetes bool) error {
	if c.SystemNamespace != "" {
		if _, err := parseNamespace(c.SystemNamespace); err != nil {
			return fmt.Errorf("--system-namespace: %v", err)
		}
	}
	if !kubernetes && (len(c.Namespaces) > 0 || len(c.LabelNamespaces) > 0) {
		return errors.New("--exempt-namespace and --exempt-label-namespace need --kubernetes (the agent learns the pods from the API)")
	}
	return nil
}

func (c *podExemptConfig) policy() exempt.Policy {
	return exempt.Policy{Namespaces: c.Namespaces, LabelNamespaces: c.LabelNamespaces,
		SystemNamespace: cmp.Or(c.SystemNamespace, kube.DefaultGlobalNamespace())}
}

// parseNamespace accepts a Kubernetes namespace name (an RFC 1123 label).
func parseNamespace(s string) (string, error) {
	ok := s != "" && len(s) <= 63 && s[0] != '-' && s[len(s)-1] != '-'
	for _, r := range s {
		ok = ok && (r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-')
	}
	if !ok {
		return "", fmt.Errorf("%q is not a namespace name (lower-case letters, digits and '-', at most 63)", s)
	}
	return s, nil
}

// startPodExemptions keeps the pods cfg selects exempt in red's map, fed
// by w, until ctx ends; ep serves what it knows.
func startPodExemptions(ctx context.Context, cfg *podExemptConfig, w *pods.Watcher, red *redirect.Redirector, ep *exemptEndpoint, log *slog.Logger) {
	p := cfg.policy()
	c := exempt.New(p, red, log)
	ep.ctrl.Store(c)
	log.Info("exempting pods", "namespaces", p.Namespaces, "label", exempt.LabelExempt+"=true", "label_namespaces", p.LabelNamespaces,
		"system_namespace", p.SystemNamespace)
	go func() {
		if err := c.Run(ctx, w); err != nil && ctx.Err() == nil {
			log.Warn("pod exemptions: " + err.Error() + "; pods are exempted as they are seen, but what a previous agent left stays until the list is in")
		}
	}()
}

// exemptEndpoint serves GET /exempt on the admin port: the exempt pods of
// this node, or with ?pod=NAMESPACE/NAME what is known of one pod
// (egressd explain --pod asks it).
type exemptEndpoint struct {
	ctrl atomic.Pointer[exempt.Controller]
}

func (e *exemptEndpoint) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /exempt", e.serve)
}

func (e *exemptEndpoint) serve(w http.ResponseWriter, r *http.Request) {
	c := e.ctrl.Load()
	w.Header().Set("Content-Type", "application/json")
	if c == nil {
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(map[string]string{"error": "this agent does not watch pods (no --kubernetes): no pod is exempt by namespace or label"})
		return
	}
	q := r.URL.Query().Get("pod")
	if q == "" {
		json.NewEncoder(w).Encode(map[string]any{"pods": c.Exempt()})
		return
	}
	ns, name, ok := strings.Cut(q, "/")
	if !ok || ns == "" || name == "" {
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"error": "pod=NAMESPACE/NAME"})
		return
	}
	st, known := c.Pod(ns, name)
	if !known {
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(map[string]string{"error": fmt.Sprintf("no pod %s/%s on this node", ns, name)})
		return
	}
	json.NewEncoder(w).Encode(st)
}
