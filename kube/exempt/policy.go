package exempt

import (
	"fmt"
	"slices"

	"github.com/egressd/egressd/redirect"
)

// The labels this package reads. Each is honoured only in the namespaces
// the operator named for it (Policy): whoever may create or label pods
// in a namespace can set them, and a tenant must not be able to exempt
// its own pods.
const (
	// LabelExempt ("true") exempts a pod in a namespace of
	// Policy.LabelNamespaces (reason label).
	LabelExempt = "egressd.io/exempt"
	// LabelGateway ("true") marks a pod of egressd's gateway in
	// Policy.SystemNamespace (reason gateway): its upstream dials must
	// leave the node, not come back to the agent, which would send
	// useEgressProxy traffic to the gateway again.
	LabelGateway = "egressd.io/gateway"
	// LabelAgent ("true") marks a pod of egressd's own agent in
	// Policy.SystemNamespace (reason agent).
	LabelAgent = "egressd.io/agent"
)

// Managed are the reasons a Controller owns; the others (flag, self) are
// the agent's own.
const Managed = redirect.ExemptNamespace | redirect.ExemptLabel | redirect.ExemptGateway | redirect.ExemptAgent

// Policy says which pods are exempt.
type Policy struct {
	// Namespaces: every pod there is exempt (--exempt-namespace).
	Namespaces []string
	// LabelNamespaces: a pod there labelled LabelExempt=true is exempt
	// (--exempt-label-namespace). The label is ignored elsewhere.
	LabelNamespaces []string
	// SystemNamespace is egressd's own (--system-namespace): LabelGateway
	// and LabelAgent are honoured there only. "": nowhere.
	SystemNamespace string
}

// Reasons returns why a pod in namespace ns with labels is exempt (0: it
// is governed).
func (p Policy) Reasons(ns string, labels map[string]string) redirect.ExemptReason {
	var why redirect.ExemptReason
	if slices.Contains(p.Namespaces, ns) {
		why |= redirect.ExemptNamespace
	}
	if labels[LabelExempt] == "true" && slices.Contains(p.LabelNamespaces, ns) {
		why |= redirect.ExemptLabel
	}
	if ns != "" && ns == p.SystemNamespace {
		if labels[LabelGateway] == "true" {
			why |= redirect.ExemptGateway
		}
		if labels[LabelAgent] == "true" {
			why |= redirect.ExemptAgent
		}
	}
	return why
}

// Explain says in words why a pod in ns with labels is exempt or not,
// naming a label it carries that is ignored where it is.
func (p Policy) Explain(ns string, labels map[string]string) string {
	why := p.Reasons(ns, labels)
	var s []string
	if why&redirect.ExemptNamespace != 0 {
		s = append(s, fmt.Sprintf("namespace %s is listed by --exempt-namespace", ns))
	}
	if why&redirect.ExemptLabel != 0 {
		s = append(s, fmt.Sprintf("label %s=true in namespace %s, which --exempt-label-namespace lists", LabelExempt, ns))
	} else if labels[LabelExempt] == "true" {
		s = append(s, fmt.Sprintf("label %s=true ignored: namespace %s is not listed by --exempt-label-namespace", LabelExempt, ns))
	}
	for _, l := range []struct {
		key string
		bit redirect.ExemptReason
	}{{LabelGateway, redirect.ExemptGateway}, {LabelAgent, redirect.ExemptAgent}} {
		switch {
		case why&l.bit != 0:
			s = append(s, fmt.Sprintf("label %s=true in egressd's namespace %s", l.key, ns))
		case labels[l.key] == "true":
			s = append(s, fmt.Sprintf("label %s=true ignored: only egressd's namespace (--system-namespace %q) is trusted with it", l.key, p.SystemNamespace))
		}
	}
	if len(s) == 0 {
		return "no exemption applies"
	}
	out := s[0]
	for _, x := range s[1:] {
		out += "; " + x
	}
	return out
}
