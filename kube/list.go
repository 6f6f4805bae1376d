package kube

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/egressd/egressd/rules"
)

// NamespaceRules lists the EgressRules of namespace ns once (egressd
// explain --namespace) and compiles those the agent would accept, each
// checked alone as Rules does; refused names every object left out, with
// its problems.
func NamespaceRules(ctx context.Context, client dynamic.Interface, ns string) (s *rules.Set, refused []error, err error) {
	list, err := client.Resource(EgressRuleGVR).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("list EgressRules of namespace %s: %w", ns, err)
	}
	var docs []rules.Document
	for i := range list.Items {
		d, err := Document(&list.Items[i])
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
