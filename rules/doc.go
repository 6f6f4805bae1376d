// Package rules is egressd's model of Istio's EgressRule: it decodes rule
// files, validates them, compiles them into a Set that answers which rule (if
// any) allows a host and port, and reloads them when they change.
//
// # Matching
//
// A rule's destination.service is an exact host name ("api.foo.com"), an IP
// address, a suffix wildcard ("*.foo.com", "*-bar.foo.com"), a prefix
// wildcard ("foo.*") or "*" alone. As in Envoy's virtual host domains, '*'
// stands for a non-empty string, dots included: "*.foo.com" matches
// "a.b.foo.com" but not "foo.com", and "*-bar.foo.com" matches
// "baz-bar.foo.com" but not "-bar.foo.com". Names are compared without case
// (rules are lower-cased and IDNA-converted at load; a Host is ASCII
// lower-cased at lookup), without a port in the Host and without a trailing
// dot.
//
// Precedence follows Envoy: an exact name, then the longest suffix
// wildcard, then the longest prefix wildcard, then "*". The decision is made
// per (host, port): among the rules whose service matches the host AND that
// list the port, the most specific wins. That is how Istio built Envoy's
// configuration from EgressRules: one listener (and one route table) per
// port, holding the virtual hosts of the services on that port, so a rule for
// "api.foo.com" on 443 does not hide "*.foo.com" on 80 from a request to
// api.foo.com:80. A host that no rule lists with the port is denied: a host
// allowed on 443 is not allowed on 8080.
//
// Set.Match does not allocate and its cost does not grow with the number of
// rules: one map lookup for the exact name, then one per distinct wildcard
// length shorter than the host. A Host longer than 255 bytes is denied.
package rules
