package explain

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/egressd/egressd/kube"
	"github.com/egressd/egressd/rules"
)

// Scope is explain's --namespace: the rules a namespace's pods get, the
// global ones (--rules, and with the API the global namespace's
// EgressRules) and then the namespace's own, read from files
// (NamespaceRules, --namespace-rules) or listed from the API (Kubeconfig).
type Scope struct {
	Namespace, NamespaceRules, Kubeconfig, GlobalNamespace string
}

// Usage checks the combination of flags; "" when fine.
func (e *Scope) Usage() string {
	switch {
	case e.Namespace == "" && (e.NamespaceRules != "" || e.Kubeconfig != "" || e.GlobalNamespace != ""):
		return "--namespace-rules, --kubeconfig and --global-namespace need --namespace"
	case e.Namespace != "" && (e.NamespaceRules == "") == (e.Kubeconfig == ""):
		return "--namespace needs the namespace's rules: --namespace-rules PATH, or --kubeconfig PATH to read them from the API (one of the two)"
	}
	return ""
}

// Layer returns the rules the namespace's pods get, on top of files (the
// --rules); warnings and the objects the agent would refuse go to stderr.
func (e *Scope) Layer(files *rules.Set, stderr io.Writer) (*rules.Set, error) {
	if e.Namespace == "" {
		return files, nil
	}
	global, own := files, (*rules.Set)(nil)
	if e.NamespaceRules != "" {
		s, warnings, err := rules.Load(e.NamespaceRules)
		for _, w := range warnings {
			fmt.Fprintln(stderr, "warning:", w)
		}
		if err != nil {
			return nil, fmt.Errorf("namespace %s: %w", e.Namespace, err)
		}
		own = s
	} else {
		client, err := kube.Client(e.Kubeconfig)
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
		gns := cmp.Or(e.GlobalNamespace, kube.DefaultGlobalNamespace())
		g, err := list(gns)
		if err != nil {
			return nil, err
		}
		global = layerWarn(files, g, gns, stderr)
		if e.Namespace != gns {
			if own, err = list(e.Namespace); err != nil {
				return nil, err
			}
		}
	}
	return layerWarn(global, own, e.Namespace, stderr), nil
}

// layerWarn is rules.Layer, saying on stderr which rules it left out.
func layerWarn(base, own *rules.Set, ns string, stderr io.Writer) *rules.Set {
	s, dropped := rules.Layer(base, own)
	for _, d := range dropped {
		fmt.Fprintf(stderr, "warning: namespace %s: left out, it conflicts with the global rules: %s\n", ns, d)
	}
	return s
}
