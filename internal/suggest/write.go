package suggest

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/egressd/egressd/rules"
)

// Summary is what Write suggested, for a one-line report.
type Summary struct {
	Rules     int      // rules written (wildcard proposals not counted)
	Proposals int      // wildcards proposed in comments
	Requests  int      // request entries added
	Covered   int      // of them, allowed by the rules written
	LeftOut   []string // "N why", one per reason
	Malformed int      // lines that were not log records
	Skipped   int      // other log records
}

// maxMalformed is how many malformed lines are named in the comments.
const maxMalformed = 20

// Malformed records a line that could not be read (source:line: err).
func (s *Suggester) Malformed(source string, line int, err error) {
	s.malformed++
	if len(s.malformedList) < maxMalformed {
		s.malformedList = append(s.malformedList, fmt.Sprintf("%s:%d: %s", source, line, commentSafe(err.Error())))
	}
}

// Skipped adds n log records that were not request lines.
func (s *Suggester) Skipped(n int) { s.skipped += n }

// rule is one rule to write.
type rule struct {
	key   hostKey
	name  string
	obs   *observed
	ports []rules.Port
	notes []string
}

// Write writes the suggested rules as YAML documents with comments, in the
// order namespace, host, and returns what it wrote.
func (s *Suggester) Write(w io.Writer, sources string) (Summary, error) {
	sum := Summary{Requests: s.entries, Malformed: s.malformed, Skipped: s.skipped}
	rs := s.rules()
	for _, r := range rs {
		sum.Covered += r.obs.requests
	}
	sum.Rules = len(rs)
	for _, l := range s.left {
		sum.LeftOut = append(sum.LeftOut, fmt.Sprintf("%d %s", l.count, l.why))
	}

	var b bytes.Buffer
	fmt.Fprintf(&b, "# EgressRules suggested by egressd suggest from %s.\n", commentSafe(sources))
	b.WriteString("# Review every rule before enforcing it: a rule allows every request to its\n" +
		"# host and port, not only the ones seen. Then: egressd check FILE.\n#\n")
	fmt.Fprintf(&b, "# %s %d of %s.\n", Covers(len(rs)), sum.Covered, plural(s.entries, "request"))
	if len(s.left) > 0 {
		left := 0
		for _, l := range s.left {
			left += l.count
		}
		fmt.Fprintf(&b, "# Left out (no rule suggested): %s.\n", plural(left, "request"))
		for _, l := range s.left {
			fmt.Fprintf(&b, "#   %d %s: %s\n", l.count, l.why, strings.Join(l.examples, ", "))
		}
	}
	if s.malformed > 0 {
		fmt.Fprintf(&b, "# Malformed lines, not read: %d.\n", s.malformed)
		for _, m := range s.malformedList {
			fmt.Fprintf(&b, "#   %s\n", m)
		}
		if s.malformed > len(s.malformedList) {
			fmt.Fprintf(&b, "#   and %d more\n", s.malformed-len(s.malformedList))
		}
	}
	if s.skipped > 0 {
		fmt.Fprintf(&b, "# Other log records skipped: %d.\n", s.skipped)
	}
	if s.namespaced() {
		b.WriteString("# The log names the clients' scopes: rules are grouped by scope. A Kubernetes\n" +
			"# namespace is set as metadata.namespace; egressd applies that only where it\n" +
			"# reads rules per namespace — from --rules files every rule applies to every\n" +
			"# client. A cgroup scope's rules belong in its --cgroup-rules file.\n")
	}
	ns := "\x00"
	var group []rule
	for i, r := range rs {
		if r.key.ns != ns {
			ns = r.key.ns
			group = nil
			switch {
			case ns == "":
			case k8sName(ns):
				fmt.Fprintf(&b, "\n# ==== namespace %s\n", ns)
			default:
				fmt.Fprintf(&b, "\n# ==== scope %s (a --cgroup-rules cgroup: these rules belong in its rules file)\n", commentSafe(ns))
			}
		}
		group = append(group, r)
		writeRule(&b, r)
		if i == len(rs)-1 || rs[i+1].key.ns != ns {
			sum.Proposals += s.writeProposals(&b, group)
		}
	}
	_, err := w.Write(b.Bytes())
	return sum, err
}

// namespaced reports whether any entry named a namespace.
func (s *Suggester) namespaced() bool {
	for k := range s.hosts {
		if k.ns != "" {
			return true
		}
	}
	return false
}

// rules builds the rules, sorted by namespace and host.
func (s *Suggester) rules() []rule {
	var rs []rule
	names := map[hostKey]bool{} // (namespace, name) taken
	for _, k := range sortedKeys(s.hosts, cmpHostKey) {
		o := s.hosts[k]
		r := rule{key: k, obs: o, name: uniqueName(names, k.ns, k.host)}
		for _, port := range sortedKeys(o.ports, func(a, b uint16) int { return int(a) - int(b) }) {
			proto, note := protocol(s.ports[portKey{k.host, port}])
			r.ports = append(r.ports, rules.Port{Number: port, Protocol: proto})
			if note != "" {
				r.notes = append(r.notes, fmt.Sprintf("port %d: %s", port, note))
			}
		}
		if o.refused > 0 {
			r.notes = append(r.notes, fmt.Sprintf("%d request(s) were refused by the upstream address policy (the name led to a loopback, link-local or node address); a rule does not change that", o.refused))
		}
		rs = append(rs, r)
	}
	return rs
}

// uniqueName is a metadata.name for host in ns not yet taken.
func uniqueName(taken map[hostKey]bool, ns, host string) string {
	if !k8sName(ns) {
		ns = "" // no metadata.namespace: the name must differ from all others in the file
	}
	base := strings.Trim(strings.ReplaceAll(host, "_", "-"), "-.")
	if base == "" {
		base = "rule"
	}
	name := base
	for i := 2; taken[hostKey{ns, name}]; i++ {
		name = base + "-" + strconv.Itoa(i)
	}
	taken[hostKey{ns, name}] = true
	return name
}

func writeRule(b *bytes.Buffer, r rule) {
	b.WriteString("---\n")
	fmt.Fprintf(b, "# %s: %s (%s)\n", r.key.host, plural(r.obs.requests, "request"), decisions(r.obs.decisions))
	for _, p := range r.ports {
		fmt.Fprintf(b, "#   port %d %s: %s\n", p.Number, p.Protocol, uses(r.obs.ports[p.Number]))
	}
	for _, n := range r.notes {
		fmt.Fprintf(b, "#   note: %s\n", n)
	}
	writeDoc(b, "", r.name, r.key.ns, r.key.host, r.ports)
}

// writeDoc writes one EgressRule document (after its "---"), each line
// prefixed with prefix ("# " for a proposal).
func writeDoc(b *bytes.Buffer, prefix, name, ns, service string, ports []rules.Port) {
	fmt.Fprintf(b, "%sapiVersion: config.istio.io/v1alpha2\n%skind: EgressRule\n%smetadata:\n%s  name: %q\n", prefix, prefix, prefix, prefix, name)
	if ns != "" && k8sName(ns) {
		fmt.Fprintf(b, "%s  namespace: %q\n", prefix, ns)
	}
	fmt.Fprintf(b, "%sspec:\n%s  destination:\n%s    service: %q\n%s  ports:\n", prefix, prefix, prefix, service, prefix)
	for _, p := range ports {
		fmt.Fprintf(b, "%s    - port: %d\n%s      protocol: %s\n", prefix, p.Number, prefix, p.Protocol)
	}
}

// writeProposals writes, after the rules of one namespace, a commented
// wildcard rule for each parent name with enough siblings on the same
// ports, and returns how many it wrote.
func (s *Suggester) writeProposals(b *bytes.Buffer, group []rule) int {
	if s.opts.WildcardMin <= 0 {
		return 0
	}
	type sibKey struct{ parent, ports string }
	sibs := map[sibKey][]rule{}
	for _, r := range group {
		_, parent, ok := strings.Cut(r.key.host, ".")
		if !ok || !strings.Contains(parent, ".") {
			continue // never *.com
		}
		k := sibKey{parent, fmt.Sprint(r.ports)}
		sibs[k] = append(sibs[k], r)
	}
	n := 0
	for _, k := range sortedKeys(sibs, func(a, b sibKey) int { return strings.Compare(a.parent+" "+a.ports, b.parent+" "+b.ports) }) {
		rs := sibs[k]
		if len(rs) < s.opts.WildcardMin {
			continue
		}
		var names []string
		requests := 0
		for _, r := range rs {
			names = append(names, r.name)
			requests += r.obs.requests
		}
		slices.Sort(names)
		fmt.Fprintf(b, "---\n# PROPOSAL, not in force: %d names under %s were seen on the same ports (%s; %s).\n",
			len(rs), k.parent, strings.Join(names, ", "), plural(requests, "request"))
		fmt.Fprintf(b, "# *.%s would allow every name under %s, at any depth, also ones never\n"+
			"# seen. To take it, delete those %d rules and remove the \"# \" before each line below.\n", k.parent, k.parent, len(rs))
		b.WriteString("# ---\n")
		writeDoc(b, "# ", "wildcard."+k.parent, rs[0].key.ns, "*."+k.parent, rs[0].ports)
		n++
	}
	return n
}

// decisions formats decision counts: "10 allow, 2 would-deny".
func decisions(d map[string]int) string {
	var parts []string
	for _, k := range sortedKeys(d, strings.Compare) {
		parts = append(parts, fmt.Sprintf("%d %s", d[k], k))
	}
	return strings.Join(parts, ", ")
}

// uses formats a port's uses: "10 with TLS originated by egressd, 2 TLS passthrough ...".
func uses(u *[numUses]int) string {
	var parts []string
	for i, n := range u {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, useNames[i]))
		}
	}
	return strings.Join(parts, ", ")
}

// Covers is "1 rule covers" or "N rules cover".
func Covers(rules int) string {
	if rules == 1 {
		return "1 rule covers"
	}
	return plural(rules, "rule") + " cover"
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// commentSafe is s, quoted when it holds anything but printable ASCII, so
// that a value from the log cannot end a YAML comment line.
func commentSafe(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return strconv.QuoteToASCII(s)
		}
	}
	return s
}
