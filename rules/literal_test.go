package rules_test

import (
	"net/netip"
	"testing"

	"github.com/egressd/egressd/rules"
)

// Match.Literal runs on every request: the IP a rule names, and nothing (and
// no allocation) for a name.
func TestMatchLiteral(t *testing.T) {
	for service, want := range map[string]string{
		"api.allowed.test": "", "*.allowed.test": "", "1password.test": "",
		"192.0.2.7": "192.0.2.7", "2001:db8::7": "2001:db8::7", "::ffff:192.0.2.7": "192.0.2.7",
	} {
		m := rules.Match{Rule: &rules.Rule{Service: service}}
		got := m.Literal()
		if (want == "" && got.IsValid()) || (want != "" && got != netip.MustParseAddr(want)) {
			t.Errorf("Match.Literal (%q) = %v, want %q", service, got, want)
		}
	}
	m := rules.Match{Rule: &rules.Rule{Service: "api.allowed.test"}}
	if n := testing.AllocsPerRun(100, func() { m.Literal() }); n != 0 {
		t.Errorf("Match.Literal of a name allocates %v times", n)
	}
}
