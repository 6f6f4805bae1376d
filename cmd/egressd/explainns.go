package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/egressd/egressd/kube"
	"github.com/egressd/egressd/rules"
)

// explainScope is explain's --namespace: the rules a namespace's pods get,
// the global ones (--rules, and with the API the global namespace's
// EgressRules) and then the namespace's own, read from files
// (--namespace-rules) or listed from the API (--kubeconfig).
type explainScope struct {
	namespace, namespaceRules, kubeconfig, globalNamespace string
}

func (e *explainScope) flags(fs *flag.FlagSet) {
	fs.StringVar(&e.namespace, "namespace", "", "answer for the pods of this `namespace`: the global rules, then the namespace's own (from --namespace-rules or, with --kubeconfig, the API)")
	fs.StringVar(&e.namespaceRules, "namespace-rules", "", "the namespace's EgressRule `file or directory`, with --namespace")
	fs.StringVar(&e.kubeconfig, "kubeconfig", "", "kubeconfig `file`: with --namespace, list the namespace's and the global namespace's EgressRules from the API")
	fs.StringVar(&e.globalNamespace, "global-namespace", "", "with --kubeconfig, the `namespace` whose EgressRules apply to every pod (default: as the agent's, egressd outside a pod)")
}

// usage checks the combination of flags; "" when fine.
func (e *explainScope) usage() string {
	switch {
	case e.namespace == "" && (e.namespaceRules != "" || e.kubeconfig != "" || e.globalNamespace != ""):
		return "--namespace-rules, --kubeconfig and --global-namespace need --namespace"
	case e.namespace != "" && (e.namespaceRules == "") == (e.kubeconfig == ""):
		return "--namespace needs the namespace's rules: --namespace-rules PATH, or --kubeconfig PATH to read them from the API (one of the two)"
	}
	return ""
}

// layer returns the rules the namespace's pods get, on top of files (the
// --rules); warnings and the objects the agent would refuse go to stderr.
func (e *explainScope) layer(files *rules.Set, stderr io.Writer) (*rules.Set, error) {
	if e.namespace == "" {
		return files, nil
	}
	global, own := files, (*rules.Set)(nil)
	if e.namespaceRules != "" {
		s, warnings, err := rules.Load(e.namespaceRules)
		for _, w := range warnings {
			fmt.Fprintln(stderr, "warning:", w)
		}
		if err != nil {
			return nil, fmt.Errorf("namespace %s: %w", e.namespace, err)
		}
		own = s
	} else {
		client, err := kube.Client(e.kubeconfig)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		list := func(ns string) (*rules.Set, error) {
			s, refused, err := kube.NamespaceRules(ctx, client, ns)
			for _, r := range refused {
				fmt.Fprintf(stderr, "warning: refused, as the agent refuses it (it keeps an earlier good version, if it had one): %v\n", r)
			}
			var re *rules.Error
			if errors.As(err, &re) {
				err = fmt.Errorf("namespace %s: its EgressRules do not fit together, so the agent keeps the set it had before the last change: %w", ns, err)
			}
			return s, err
		}
		gns := cmp.Or(e.globalNamespace, kube.DefaultGlobalNamespace())
		g, err := list(gns)
		if err != nil {
			return nil, err
		}
		global = layerWarn(files, g, gns, stderr)
		if e.namespace != gns {
			if own, err = list(e.namespace); err != nil {
				return nil, err
			}
		}
	}
	return layerWarn(global, own, e.namespace, stderr), nil
}

// layerWarn is rules.Layer, saying on stderr which rules it left out.
func layerWarn(base, own *rules.Set, ns string, stderr io.Writer) *rules.Set {
	s, dropped := rules.Layer(base, own)
	for _, d := range dropped {
		fmt.Fprintf(stderr, "warning: namespace %s: left out, it conflicts with the global rules: %s\n", ns, d)
	}
	return s
}
