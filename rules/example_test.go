package rules_test

import (
	"fmt"

	"github.com/egressd/egressd/rules"
)

// The most specific service that lists the port wins; '*' stands for a
// non-empty string.
func ExampleSet_Match() {
	set, err := rules.Compile([]*rules.Rule{
		{Name: "foo-egress-rule", Service: "*.foo.com", Ports: []rules.Port{{Number: 80, Protocol: rules.HTTP}, {Number: 443, Protocol: rules.HTTPS}}},
		{Name: "bar", Service: "*-bar.foo.com", Ports: []rules.Port{{Number: 80, Protocol: rules.HTTP}}},
	})
	if err != nil {
		panic(err)
	}
	for _, q := range []struct {
		host string
		port uint16
	}{
		{"baz-bar.foo.com", 80},
		{"baz-bar.foo.com", 443}, // "bar" does not list 443
		{"-bar.foo.com", 80},     // '*' is non-empty: not "bar"
		{"API.Foo.com.:443", 443},
		{"foo.com", 80},
		{"api.foo.com", 8080},
	} {
		if m, ok := set.Match(q.host, q.port); ok {
			fmt.Printf("%s %d: allow by %s as %s\n", q.host, q.port, m.Rule.Name, m.Port.Protocol)
		} else {
			fmt.Printf("%s %d: deny\n", q.host, q.port)
		}
	}
	// Output:
	// baz-bar.foo.com 80: allow by bar as HTTP
	// baz-bar.foo.com 443: allow by foo-egress-rule as HTTPS
	// -bar.foo.com 80: allow by foo-egress-rule as HTTP
	// API.Foo.com.:443 443: allow by foo-egress-rule as HTTPS
	// foo.com 80: deny
	// api.foo.com 8080: deny
}
