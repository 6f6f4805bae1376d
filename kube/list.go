package kube

import (
	"context"
	"fmt"

	"github.com/egressd/egressd/kube/internal/apiclient"
	"github.com/egressd/egressd/rules"
)

// NamespaceRules lists the EgressRules of namespace ns once (egressd
// explain --namespace) and compiles those the agent would accept, each
// checked alone as Rules does; refused names every object left out, with
// its problems.
func NamespaceRules(ctx context.Context, client *apiclient.Client, ns string) (s *rules.Set, refused []error, err error) {
	items, _, err := client.List(ctx, EgressRuleGVR, ns, "")
	if err != nil {
		return nil, nil, fmt.Errorf("list EgressRules of namespace %s: %w", ns, err)
	}
	var docs []rules.Document
	for _, item := range items {
		d, err := Document(item)
		if err == nil {
			_, _, err = rules.LoadDocuments(d)
		}
		if err != nil {
			refused = append(refused, err)
			continue
		}
		docs = append(docs, d)
	}
	s, _, err = rules.LoadDocuments(docs...)
	return s, refused, err
}
