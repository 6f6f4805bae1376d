// Package check is what `egressd check` says about rule files beyond
// rules.Load: check.go relates the rules that demand the egress proxy to
// the --egress-proxy URL that run will get (EgressProxy, with the URL's
// own checks in ParseEgressProxyURL) and prints the problems, warnings and
// the summary line (Print). The flags, usage and exit codes stay in
// cmd/egressd (check.go).
package check

import (
	"fmt"
	"io"
	"net/url"

	"github.com/egressd/egressd/rules"
)

// Print writes every problem as "file:line: field: message", every warning
// prefixed "warning: ", then a summary line; it reports whether the rules
// are valid (no problem). set is nil when rules.Load failed.
func Print(w io.Writer, set *rules.Set, problems []rules.Problem, warnings []rules.Warning) bool {
	for _, p := range problems {
		fmt.Fprintln(w, p)
	}
	for _, wn := range warnings {
		fmt.Fprintln(w, "warning:", wn)
	}
	if len(problems) > 0 {
		summary := plural(len(problems), "problem")
		if n := problemFiles(problems); n > 0 {
			summary += " in " + plural(n, "file")
		}
		fmt.Fprintln(w, summary)
		return false
	}
	summary := fmt.Sprintf("%s, %s: OK", plural(len(set.Files()), "file"), plural(set.Len(), "rule"))
	if len(warnings) > 0 {
		summary += fmt.Sprintf(" (%s)", plural(len(warnings), "warning"))
	}
	fmt.Fprintln(w, summary)
	return true
}

// EgressProxy relates the rules that demand the egress proxy to the
// --egress-proxy value run will get: a given URL must be valid, an explicitly
// empty one is a problem when rules need it, and a missing one is a warning.
// set is nil when the rules are invalid.
func EgressProxy(set *rules.Set, proxy string, given bool) (problems []rules.Problem, warnings []rules.Warning) {
	if given && proxy != "" {
		if _, err := ParseEgressProxyURL(proxy); err != nil {
			problems = append(problems, rules.Problem{Field: "--egress-proxy", Message: err.Error()})
		}
		return problems, nil
	}
	if set == nil {
		return nil, nil
	}
	var users []*rules.Rule
	for _, r := range set.Rules() {
		if r.UseEgressProxy {
			users = append(users, r)
		}
	}
	if len(users) == 0 {
		return nil, nil
	}
	verb := "uses"
	if len(users) > 1 {
		verb = "use"
	}
	msg := fmt.Sprintf("%s %s useEgressProxy (the first: %s at %s)", plural(len(users), "rule"), verb, users[0].Name, users[0].Source)
	if given {
		return []rules.Problem{{Field: "--egress-proxy", Message: "empty, but " + msg + "; give the egress proxy's URL, e.g. http://egress-proxy:3128"}}, nil
	}
	return nil, []rules.Warning{{Field: "--egress-proxy", Message: "not given, but " + msg + "; egressd run needs --egress-proxy URL for them"}}
}

// ParseEgressProxyURL parses an egress proxy URL: http:// or https://, with
// a host.
func ParseEgressProxyURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a URL: %v; write it like http://egress-proxy:3128", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Hostname() == "" {
		return nil, fmt.Errorf("%q must be http:// or https:// with a host, e.g. http://egress-proxy:3128", u.Redacted())
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" { // as run and l7 refuse them
		return nil, fmt.Errorf("%q must have no path or query: http[s]://[user:password@]host[:port]", u.Redacted())
	}
	return u, nil
}

// problemFiles counts the distinct files named by problems.
func problemFiles(ps []rules.Problem) int {
	files := map[string]bool{}
	for _, p := range ps {
		if p.File != "" {
			files[p.File] = true
		}
	}
	return len(files)
}

// plural formats "1 file", "2 files".
func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
