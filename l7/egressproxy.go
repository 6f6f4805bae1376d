package l7

// Chaining through the egress proxy (Config.EgressProxy) for rules with
// useEgressProxy: the connections and tunnels are l7/internal/dialer's,
// the absolute-form requests l7/internal/http1's; here is the start-up
// check.

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/egressd/egressd/l7/internal/dialer"
	"github.com/egressd/egressd/rules"
)

// CheckEgressProxy is the start-up check of egressd run: with no egress
// proxy configured (egressProxy nil), every rule of set that demands one is
// an error naming them; with one, the URL must be usable.
func CheckEgressProxy(set *rules.Set, egressProxy *url.URL) error {
	if egressProxy != nil {
		_, err := dialer.ParseEgressProxy(egressProxy)
		return err
	}
	var names []string
	for _, r := range set.Rules() {
		if r.UseEgressProxy {
			names = append(names, fmt.Sprintf("%s (%s)", r.Name, r.Source))
		}
	}
	if len(names) == 0 {
		return nil
	}
	return fmt.Errorf("%d rule(s) have useEgressProxy but no egress proxy is configured (give --egress-proxy URL): %s",
		len(names), strings.Join(names, ", "))
}
