// Package rules is egressd's model of Istio's EgressRule: it decodes rule
// files, validates them, compiles them into a Set that answers which rule (if
// any) allows a host and port, and reloads them when they change.
//
// # Files
//
// Load reads files, or directories of *.yaml, *.yml and *.json files (not
// recursively; hidden entries are skipped, so a mounted ConfigMap's ..data
// and ..<timestamp> entries are not read twice). A directory with a ..data
// entry, as the kubelet mounts a ConfigMap, is read through ..data resolved
// once, so one load sees one version of the ConfigMap even while the
// kubelet swaps it (and files placed beside the ConfigMap's own are not
// read). A file holds one or more
// documents of kind: EgressRule, with or without apiVersion
// (config.istio.io/v1alpha2) and metadata; documents of other kinds are
// skipped with a warning. The reference page's own example writes
// "service: *.foo.com" unquoted, which YAML reads as an alias; such a value
// is read as the string it looks like, so the example loads as pasted. Only
// a plain scalar changes meaning: the same text inside a block scalar or a
// quoted string stays as written, and "service: *svc" with an anchor &svc
// in the file stays the alias it is. Decoding is
// strict: an unknown field is an error. Every problem of a run comes back at
// once in an *Error, each as "file:line: field: what is wrong and how to fix
// it". Besides malformed fields, two rules that give one port of one service
// different protocols, or different useEgressProxy settings, are refused;
// identical duplicates are fine. destination.name, namespace, domain and
// labels are accepted with a warning, as Istio ignored them.
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
// lower-cased at lookup, so a Host must already be in A-label form
// "xn--..."), without a port in the Host and without a trailing dot. IPv6
// literals are compared in canonical form, with or without brackets.
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
// rules, only with the host: one map lookup for the exact name, one per dot
// of the host for wildcards at a label boundary ("*.foo.com", "foo.*"), and
// one per distinct length of the other wildcards ("*-bar.foo.com"), each
// walk stopping at its first (longest) hit. An empty Host, or one longer
// than 255 bytes, is denied.
//
// # Lifecycle
//
// A Set never changes; a Reloader swaps whole Sets atomically, so a reader
// that calls Current once per request sees one consistent version. Only the
// first load (NewReloader) can fail the caller; afterwards a version with
// problems is logged, counted (Stats) and reported to OnReload, and the last
// good Set stays in force. Watch blocks until its context ends: run it on its
// own goroutine, and call Reload on SIGHUP. A version without any
// EgressRule is refused while the rules in force have some, unless a
// document says so (kind: DenyAllEgress, alone or with apiVersion and
// metadata); the first load may be empty. A file edited in place can be
// read half-written: a partial version is normally refused as invalid, an
// empty one as above, until the write's next event reloads again. Replace
// rule files atomically (write, then rename), as Kubernetes does. Compile does not modify the Rules
// it is given (their Service is kept as written, the index is normalized),
// and Match returns those same pointers.
package rules
