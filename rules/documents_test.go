package rules

import (
	"errors"
	"strings"
	"testing"
)

func TestLoadDocuments(t *testing.T) {
	good := Document{Source: "EgressRule team-a/foo", Data: []byte(`{"apiVersion":"config.istio.io/v1alpha2","kind":"EgressRule","metadata":{"name":"foo"},"spec":{"destination":{"service":"*.foo.com"},"ports":[{"port":80,"protocol":"http"},{"port":443,"protocol":"https"}]}}`)}
	s, _, err := LoadDocuments(good)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := s.Match("api.foo.com", 443)
	if !ok || m.Rule.Name != "foo" || m.Rule.Source != "EgressRule team-a/foo" || m.Port.Protocol != HTTPS {
		t.Fatalf("api.foo.com:443 = %+v, %v; want rule foo from EgressRule team-a/foo, HTTPS", m, ok)
	}
	if _, ok := s.Match("foo.com", 80); ok {
		t.Fatal("foo.com:80 allowed by *.foo.com")
	}

	bad := Document{Source: "EgressRule team-a/bad", Data: []byte(`{"kind":"EgressRule","metadata":{"name":"bad"},"spec":{"destination":{"service":"*.foo.com"},"ports":[{"port":70000,"protocol":"ftp"}]}}`)}
	_, _, err = LoadDocuments(good, bad)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("bad document: err %v, want an *Error", err)
	}
	msg := err.Error()
	for _, want := range []string{"EgressRule team-a/bad: spec.ports[0].port: 70000 is out of range", `EgressRule team-a/bad: spec.ports[0].protocol: "ftp" is not a protocol`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	for _, p := range e.Problems {
		if p.Line != 0 {
			t.Errorf("problem %v has a line number; documents have none", p)
		}
	}

	// Two documents that give one port of one service two protocols are
	// refused as two files would be.
	clash := Document{Source: "EgressRule team-a/clash", Data: []byte(`{"kind":"EgressRule","metadata":{"name":"clash"},"spec":{"destination":{"service":"*.foo.com"},"ports":[{"port":443,"protocol":"HTTP"}]}}`)}
	if _, _, err := LoadDocuments(good, clash); err == nil || !strings.Contains(err.Error(), "443") {
		t.Fatalf("conflicting documents: err %v, want the conflict on 443", err)
	}

	empty, warnings, err := LoadDocuments()
	if err != nil || empty.Len() != 0 || len(warnings) != 0 {
		t.Fatalf("no documents: %v rules, warnings %v, err %v; want an empty set, quietly", empty.Len(), warnings, err)
	}
}
