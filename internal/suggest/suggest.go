// Package suggest turns what egressd's access log says was seen into
// EgressRules that would allow it: `egressd suggest`. Entries are added one
// by one (Add); Write prints the rules as YAML that rules.Load accepts,
// with comments saying what each rule covers, and what was left out and why.
// suggest.go groups the entries and decides each port's protocol; write.go
// writes the rules, the wildcard proposals and the left-out comments;
// read.go reads an access log in (ReadLog), words the command's summary
// line (Summary.Line) and loads the output back (Loads).
//
// What a rule is built from:
//   - one rule per host name (per namespace when the log names one), with a
//     port for each port the host was reached on;
//   - each port's protocol from how it was used: HTTPS when egressd
//     originated TLS, or when an app sent plain HTTP to port 443 in audit
//     mode (it expects egressd to originate TLS), or when only TLS
//     passthrough was seen (passthrough is decided by SNI whatever the
//     protocol; HTTPS is named so that plain HTTP to that port would be
//     sent with TLS); GRPC when only gRPC was seen; HTTP2 for h2c; HTTP
//     otherwise. A port's protocol is decided over all namespaces, since
//     rules.Load refuses two protocols for one host and port;
//   - a wildcard only as a proposal, in a YAML comment, when at least
//     Options.WildcardMin sibling names under one parent name were seen on
//     the same ports and protocols. The active rules stay exact.
//
// The scope of a log line (its namespace field) groups the rules: a
// Kubernetes namespace name becomes metadata.namespace; another scope (a
// --cgroup-rules cgroup directory) gets its own section, its rules meant
// for that cgroup's rules file.
//
// Left out, each counted and listed with examples: IP literals (a rule may
// name an address, but one seen in a Host is worth a human's look), entries
// without a host name (a TLS hello without SNI) or without a port, names a
// rule cannot hold, denied requests (unless Options.IncludeDenied) and
// requests refused before matching (decision invalid).
package suggest

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/egressd/egressd/internal/accesslog"
	"github.com/egressd/egressd/rules"
)

// Options tune what is suggested. The zero value proposes no wildcard and
// leaves denied requests out.
type Options struct {
	// WildcardMin is how many sibling names under one parent must be seen
	// before "*.parent" is proposed; 0: never.
	WildcardMin int
	// IncludeDenied suggests rules for requests that were denied
	// (decision deny: enforce mode refused them) as well.
	IncludeDenied bool
}

// DefaultWildcardMin is egressd suggest's default --wildcard-min.
const DefaultWildcardMin = 3

// use is how a request used a port; it decides the port's protocol.
type use int

const (
	usePlain       use = iota // HTTP/1.x forwarded as plain HTTP
	useOriginated             // egressd originated TLS (HTTP/1.x or h2)
	usePlainTo443             // audit mode: plain HTTP/1.x to port 443 forwarded as it was
	usePassthrough            // TLS passthrough by SNI, or a gateway CONNECT tunnel
	useH2C                    // h2c, not gRPC
	useGRPC                   // gRPC over h2c
	numUses
)

var useNames = [numUses]string{
	usePlain:       "HTTP/1.x forwarded as plain HTTP",
	useOriginated:  "with TLS originated by egressd",
	usePlainTo443:  "plain HTTP to port 443 (audit mode forwarded it in clear; the app expects egressd to originate TLS)",
	usePassthrough: "TLS passthrough (the app's own TLS, decided by SNI)",
	useH2C:         "h2c",
	useGRPC:        "gRPC",
}

// portKey is a host and port over all namespaces.
type portKey struct {
	host string
	port uint16
}

// hostKey is one rule: a host in a namespace.
type hostKey struct{ ns, host string }

// observed is what was seen of one host in one namespace.
type observed struct {
	ports     map[uint16]*[numUses]int
	decisions map[string]int
	refused   int // refused by the upstream address policy
	requests  int
}

// leftOut is one reason requests were left out, with examples.
type leftOut struct {
	why      string
	count    int
	examples []string // "what (source:line)", at most maxExamples
	seen     map[string]bool
}

const maxExamples = 5

// Suggester collects entries. Not safe for concurrent use.
type Suggester struct {
	opts    Options
	hosts   map[hostKey]*observed
	ports   map[portKey]*[numUses]int
	left    []*leftOut
	leftBy  map[string]*leftOut
	entries int

	malformed     int
	malformedList []string
	skipped       int
}

// New returns an empty Suggester.
func New(opts Options) *Suggester {
	return &Suggester{opts: opts, hosts: map[hostKey]*observed{}, ports: map[portKey]*[numUses]int{}, leftBy: map[string]*leftOut{}}
}

// Add adds one entry read from source ("file" or "stdin").
func (s *Suggester) Add(source string, e *accesslog.Entry) {
	s.entries++
	where := fmt.Sprintf("%s:%d", source, e.Line)
	switch e.Decision {
	case "allow", "would-deny":
	case "deny":
		if !s.opts.IncludeDenied {
			s.leave("denied (enforce mode refused it; --include-denied suggests rules for these too)", hostPort(e), where)
			return
		}
	case "invalid":
		s.leave("refused before matching (decision invalid: a malformed request)", reasonOr(e), where)
		return
	default:
		s.leave("unknown decision", fmt.Sprintf("%q", e.Decision), where)
		return
	}
	host := strings.TrimSuffix(strings.ToLower(e.HostName()), ".")
	switch {
	case host == "":
		s.leave("no host name (a TLS hello without SNI, or a request without Host)", hostPort(e), where)
		return
	case e.Port == 0:
		s.leave("no port", host, where)
		return
	}
	if _, err := netip.ParseAddr(host); err == nil {
		s.leave("IP literal (egressd decides by name; write a rule naming the address only if you mean it)", hostPort(e), where)
		return
	}
	if !ruleName(host) {
		s.leave("not a host name a rule can hold (letters, digits, '-', '_' and dots; a non-ASCII name only in its xn-- form, as requests must send it)", fmt.Sprintf("%q", e.Host), where)
		return
	}
	u, ok := usage(e)
	if !ok {
		s.leave("unknown protocol", fmt.Sprintf("%s %q", hostPort(e), e.Protocol), where)
		return
	}
	k := hostKey{e.Namespace, host}
	o := s.hosts[k]
	if o == nil {
		o = &observed{ports: map[uint16]*[numUses]int{}, decisions: map[string]int{}}
		s.hosts[k] = o
	}
	if o.ports[e.Port] == nil {
		o.ports[e.Port] = new([numUses]int)
	}
	o.ports[e.Port][u]++
	o.decisions[e.Decision]++
	o.requests++
	if strings.Contains(e.Reason, "upstream address") {
		o.refused++
	}
	pk := portKey{host, e.Port}
	if s.ports[pk] == nil {
		s.ports[pk] = new([numUses]int)
	}
	s.ports[pk][u]++
}

// usage classifies how e used its port.
func usage(e *accesslog.Entry) (use, bool) {
	switch {
	case e.Protocol == "tls-passthrough" || e.Upstream == "tunnel" || e.Upstream == "tls":
		return usePassthrough, true
	case e.Upstream == "https":
		return useOriginated, true
	case e.Protocol == "grpc":
		return useGRPC, true
	case e.Protocol == "h2c":
		return useH2C, true
	case e.Protocol == "http/1.1" || e.Protocol == "http/1.0":
		if e.Decision != "allow" && e.Port == 443 {
			return usePlainTo443, true
		}
		return usePlain, true
	}
	return 0, false
}

func (s *Suggester) leave(why, what, where string) {
	l := s.leftBy[why]
	if l == nil {
		l = &leftOut{why: why, seen: map[string]bool{}}
		s.leftBy[why] = l
		s.left = append(s.left, l)
	}
	l.count++
	what = commentSafe(what)
	if len(l.examples) < maxExamples && !l.seen[what] {
		l.seen[what] = true
		l.examples = append(l.examples, what+" ("+where+")")
	}
}

// protocol is a port's protocol from its uses over all namespaces, and a
// note when some uses will be served differently than they were.
func protocol(u *[numUses]int) (rules.Protocol, string) {
	clear := u[usePlain] + u[useH2C] + u[useGRPC]
	switch {
	case u[useOriginated]+u[usePlainTo443] > 0:
		if clear > 0 {
			return rules.HTTPS, fmt.Sprintf("%d request(s) went in clear; with HTTPS egressd originates TLS for them", clear)
		}
		return rules.HTTPS, ""
	case clear == 0: // only passthrough
		return rules.HTTPS, "passthrough is decided by SNI whatever the protocol; HTTPS makes plain HTTP to this port get TLS originated"
	case u[useGRPC] > 0 && u[useH2C]+u[usePlain] == 0:
		return rules.GRPC, ""
	case u[useGRPC]+u[useH2C] > 0:
		if u[usePlain] > 0 {
			return rules.HTTP2, "HTTP/1.x and h2c were both seen; every protocol but HTTPS is forwarded in clear, whichever is named"
		}
		return rules.HTTP2, ""
	}
	return rules.HTTP, ""
}

// ruleName reports whether host is an ASCII name a rule's service can
// hold as it is (a request's Host is matched in that form).
func ruleName(host string) bool {
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	_, err := rules.Compile([]*rules.Rule{{Name: "x", Service: host, Ports: []rules.Port{{Number: 1, Protocol: rules.HTTP}}}})
	return err == nil
}

// k8sName reports whether ns is a Kubernetes namespace name (a DNS label).
func k8sName(ns string) bool {
	if ns == "" || len(ns) > 63 || ns[0] == '-' || ns[len(ns)-1] == '-' {
		return false
	}
	for i := 0; i < len(ns); i++ {
		if c := ns[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func hostPort(e *accesslog.Entry) string {
	h := e.HostName()
	if h == "" {
		h = "(none)"
	}
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	return fmt.Sprintf("%s:%d", h, e.Port)
}

func reasonOr(e *accesslog.Entry) string {
	if e.Reason != "" {
		return fmt.Sprintf("%q", e.Reason)
	}
	return hostPort(e)
}

// sortedKeys returns m's keys sorted by cmpKey.
func sortedKeys[K comparable, V any](m map[K]V, cmpKey func(a, b K) int) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, cmpKey)
	return keys
}

func cmpHostKey(a, b hostKey) int {
	return cmp.Or(cmp.Compare(a.ns, b.ns), cmp.Compare(a.host, b.host))
}
