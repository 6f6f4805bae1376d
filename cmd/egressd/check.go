package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"

	"github.com/egressd/egressd/rules"
)

const checkUsage = `usage: egressd check [--egress-proxy URL] PATH...

Validates EgressRule files and directories: prints every problem as
"file:line: field: message", each warning prefixed "warning: ", then a
summary. Exit status: 0 valid, 1 invalid, 2 usage error.

Flags:
`

// checkCmd implements `egressd check`.
func checkCmd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("egressd check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, checkUsage); fs.PrintDefaults() }
	proxy, proxyGiven := os.LookupEnv("EGRESSD_EGRESS_PROXY")
	fs.Func("egress-proxy", "`URL` egressd run will be given (env EGRESSD_EGRESS_PROXY); checked against rules with useEgressProxy",
		func(s string) error { proxy, proxyGiven = s, true; return nil })
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return exitError{exitUsage}
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "egressd check: no rule files given")
		fs.Usage()
		return exitError{exitUsage}
	}

	set, warnings, err := rules.Load(fs.Args()...)
	var problems []rules.Problem
	var le *rules.Error
	switch {
	case errors.As(err, &le):
		problems = le.Problems
	case err != nil:
		problems = []rules.Problem{{Message: err.Error()}}
	}
	p, w := checkEgressProxy(set, proxy, proxyGiven)
	problems = append(problems, p...)
	warnings = append(warnings, w...)

	for _, p := range problems {
		fmt.Fprintln(stdout, p)
	}
	for _, w := range warnings {
		fmt.Fprintln(stdout, "warning:", w)
	}
	if len(problems) > 0 {
		summary := plural(len(problems), "problem")
		if n := problemFiles(problems); n > 0 {
			summary += " in " + plural(n, "file")
		}
		fmt.Fprintln(stdout, summary)
		return exitError{exitFailure}
	}
	summary := fmt.Sprintf("%s, %s: OK", plural(len(set.Files()), "file"), plural(set.Len(), "rule"))
	if len(warnings) > 0 {
		summary += fmt.Sprintf(" (%s)", plural(len(warnings), "warning"))
	}
	fmt.Fprintln(stdout, summary)
	return nil
}

// checkEgressProxy relates the rules that demand the egress proxy to the
// --egress-proxy value run will get: a given URL must be valid, an explicitly
// empty one is a problem when rules need it, and a missing one is a warning.
// set is nil when the rules are invalid.
func checkEgressProxy(set *rules.Set, proxy string, given bool) (problems []rules.Problem, warnings []rules.Warning) {
	if given && proxy != "" {
		if _, err := parseEgressProxyURL(proxy); err != nil {
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

// parseEgressProxyURL parses an egress proxy URL: http:// or https://, with
// a host.
func parseEgressProxyURL(s string) (*url.URL, error) {
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
