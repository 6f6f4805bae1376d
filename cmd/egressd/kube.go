package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/egressd/egressd/kube"
	"github.com/egressd/egressd/kube/pods"
	"github.com/egressd/egressd/rules"
)

// kubeAgent is the agent's Kubernetes side (--kubernetes): the EgressRules
// of every namespace and the pods of this node, watched through the API,
// and the proxy's Scoper joining them.
type kubeAgent struct {
	rules  *kube.Rules
	pods   *pods.Watcher // also what pod-based exemptions subscribe to
	scoper *kube.Scoper
}

// kubeSyncTimeout bounds the wait for the first list of EgressRules and
// pods at start: the agent serves only once it knows every namespace's
// rules, so a restart enforces the same rules from its first request.
const kubeSyncTimeout = 60 * time.Second

// startKube connects to the API, starts the informers (until ctx ends)
// and waits for their first lists. files are the --rules; check vets each
// namespace's versions as it vets theirs; hook hears of every change.
func startKube(ctx context.Context, cfg *runConfig, files *rules.Reloader, check func(*rules.Set) error, hook *reloadHook, log *slog.Logger) (*kubeAgent, error) {
	client, err := kube.Client(cfg.Kubeconfig)
	if err != nil {
		return nil, err
	}
	log = log.With("component", "kubernetes")
	global := cmp.Or(cfg.GlobalNamespace, kube.DefaultGlobalNamespace())
	kr, err := kube.NewRules(kube.RulesOptions{Client: client, Files: files, GlobalNamespace: global, Check: check,
		OnChange: func() { hook.onReload(nil) }, Logger: log})
	if err != nil {
		return nil, err
	}
	pw, err := pods.New(pods.Options{Client: client, NodeName: cfg.NodeName, Roots: cfg.Cgroups, Logger: log})
	if err != nil {
		return nil, err
	}
	go kr.Run(ctx)
	go pw.Run(ctx)
	sctx, cancel := context.WithTimeoutCause(ctx, kubeSyncTimeout, fmt.Errorf("the API server did not answer within %v", kubeSyncTimeout))
	defer cancel()
	if err := kr.WaitSynced(sctx); err != nil {
		return nil, fmt.Errorf("kubernetes: %w (is the EgressRule CRD applied, and may the agent's service account list egressrules?)", err)
	}
	if err := pw.WaitSynced(sctx); err != nil {
		return nil, fmt.Errorf("kubernetes: %w (may the agent's service account list pods?)", err)
	}
	log.Info("kubernetes: watching EgressRules and this node's pods", "node", cfg.NodeName, "global_namespace", global,
		"namespaces_with_rules", len(kr.Namespaces()), "pods", len(pw.Pods()))
	return &kubeAgent{rules: kr, pods: pw, scoper: kube.NewScoper(pw, kr, log)}, nil
}

// stats are the rule-set figures of every namespace known.
func (k *kubeAgent) stats() []ruleSetStats {
	if k == nil {
		return nil
	}
	var out []ruleSetStats
	for _, n := range k.rules.Namespaces() {
		out = append(out, ruleSetStats{namespace: n.Name, rules: n.Current().Len(), stats: n.Stats()})
	}
	return out
}
