package deploy_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel/model"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/cel/environment"
	"sigs.k8s.io/yaml"

	"github.com/egressd/egressd/rules"
)

// egressRuleSchema is the structural schema of the CRD's one version, as
// the API server builds it.
func egressRuleSchema(t *testing.T) *schema.Structural {
	t.Helper()
	crd, ok := decodeAll(t)["CustomResourceDefinition/egressrules.config.istio.io"].(*apiextensionsv1.CustomResourceDefinition)
	if !ok {
		t.Fatal("no CustomResourceDefinition egressrules.config.istio.io in deploy/")
	}
	if len(crd.Spec.Versions) != 1 {
		t.Fatalf("%d versions, want v1alpha2 alone", len(crd.Spec.Versions))
	}
	var internal apiextensions.JSONSchemaProps
	if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(crd.Spec.Versions[0].Schema.OpenAPIV3Schema, &internal, nil); err != nil {
		t.Fatal(err)
	}
	s, err := schema.NewStructural(&internal)
	if err != nil {
		t.Fatal(err)
	}
	if errs := schema.ValidateStructural(nil, s); len(errs) > 0 {
		t.Fatalf("not a structural schema: %v", errs.ToAggregate())
	}
	return s
}

// TestCRDNamesAndVersion: what Istio 0.x manifests need to apply as they are.
func TestCRDNamesAndVersion(t *testing.T) {
	crd := decodeAll(t)["CustomResourceDefinition/egressrules.config.istio.io"].(*apiextensionsv1.CustomResourceDefinition)
	s := crd.Spec
	if s.Group != "config.istio.io" || s.Scope != apiextensionsv1.NamespaceScoped ||
		s.Names.Kind != "EgressRule" || s.Names.Plural != "egressrules" {
		t.Errorf("group %s, scope %s, kind %s, plural %s", s.Group, s.Scope, s.Names.Kind, s.Names.Plural)
	}
	if v := s.Versions[0]; v.Name != "v1alpha2" || !v.Served || !v.Storage {
		t.Errorf("version %s served %t storage %t", v.Name, v.Served, v.Storage)
	}
}

// TestCRDRulesCompile compiles every x-kubernetes-validations rule as the
// API server does for a new CRD (the environment of its compatibility
// version, which is behind the newest) and bounds its estimated cost by the
// per-rule limit the API server enforces (StaticEstimatedCostLimit), times
// how often the rule can run (the maxItems above it).
func TestCRDRulesCompile(t *testing.T) {
	const limit = 10_000_000
	envs := environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion())
	var total uint64
	var walk func(path string, s *schema.Structural, root bool, times uint64)
	walk = func(path string, s *schema.Structural, root bool, times uint64) {
		if len(s.XValidations) > 0 {
			res, err := cel.Compile(s, model.SchemaDeclType(s, root), celconfig.PerCallLimit, envs, cel.NewExpressionsEnvLoader())
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			for i, r := range res {
				if r.Error != nil {
					t.Errorf("%s rule %d: %v", path, i, r.Error)
				}
				if r.MessageExpressionError != nil {
					t.Errorf("%s rule %d messageExpression: %v", path, i, r.MessageExpressionError)
				}
				total += r.MaxCost*times + r.MessageExpressionMaxCost*times
				if c := r.MaxCost * times; c > limit {
					t.Errorf("%s rule %d: estimated cost %d × %d > %d: the API server refuses the CRD", path, i, r.MaxCost, times, limit)
				}
				if c := r.MessageExpressionMaxCost * times; c > limit {
					t.Errorf("%s rule %d: messageExpression's estimated cost %d × %d > %d: the API server refuses the CRD", path, i, r.MessageExpressionMaxCost, times, limit)
				}
			}
		}
		for name, p := range s.Properties {
			walk(path+"."+name, &p, false, times)
		}
		if s.Items != nil {
			n := uint64(1 << 20)
			if s.ValueValidation != nil && s.ValueValidation.MaxItems != nil {
				n = uint64(*s.ValueValidation.MaxItems)
			}
			walk(path+"[*]", s.Items, false, times*n)
		}
	}
	walk("", egressRuleSchema(t), true, 1)
	if total > 100_000_000 { // StaticEstimatedCRDCostLimit
		t.Errorf("estimated cost of all rules %d > 100,000,000: the API server refuses the CRD", total)
	}
	t.Logf("estimated cost of all rules: %d", total)
}

// celProblem is one error of the CRD's validation rules: the field and the
// message, as `kubectl apply` prints them ("spec.ports[0].port: Invalid
// value: ...: <message>").
type celProblem struct{ field, message string }

// validateWithCRD runs the CRD's validation rules on an object, with the
// API server's validator (k8s.io/apiextensions-apiserver).
func validateWithCRD(t *testing.T, s *schema.Structural, doc []byte) []celProblem {
	t.Helper()
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := utiljson.Unmarshal(j, &obj); err != nil { // integers as int64, as the API server decodes
		t.Fatal(err)
	}
	v := cel.NewValidator(s, true, celconfig.PerCallLimit)
	errs, _ := v.Validate(context.Background(), nil, s, obj, nil, celconfig.RuntimeCELCostBudget)
	var out []celProblem
	for _, e := range errs {
		out = append(out, celProblem{e.Field, e.Detail})
	}
	return out
}

// validateWithEgressd loads one EgressRule document as `egressd check`
// does and returns its problems.
func validateWithEgressd(t *testing.T, doc []byte) []rules.Problem {
	t.Helper()
	f := filepath.Join(t.TempDir(), "rule.yaml")
	if err := os.WriteFile(f, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := rules.Load(f)
	var le *rules.Error
	if errors.As(err, &le) {
		return le.Problems
	}
	if err != nil {
		t.Fatal(err)
	}
	return nil
}

// EgressRuleDocs returns the named documents of a testdata file.
func egressRuleDocs(t *testing.T, file string) (names []string, docs map[string][]byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	docs = map[string][]byte{}
	for _, d := range docSep.Split(string(b), -1) {
		var meta struct {
			Metadata struct{ Name string } `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(d), &meta); err != nil {
			t.Fatal(err)
		}
		if meta.Metadata.Name == "" {
			continue
		}
		names = append(names, meta.Metadata.Name)
		docs[meta.Metadata.Name] = []byte(d)
	}
	return names, docs
}

// lineRef is the "(line N)" egressd adds to a message naming another place
// of the file; an API object has no lines, the CRD's message leaves it out.
var lineRef = regexp.MustCompile(` \(line \d+\)`)

// TestCRDRefusesWhatEgressdRefuses: each document of
// testdata/egressrules-invalid.yaml has one problem; the CRD's rules must
// refuse it with egressd's message, at egressd's field or the list holding
// it (a rule on spec.ports sees every port). Every rule of the CRD must be
// broken by one of them.
func TestCRDRefusesWhatEgressdRefuses(t *testing.T) {
	s := egressRuleSchema(t)
	names, docs := egressRuleDocs(t, "egressrules-invalid.yaml")
	seen := map[string]bool{} // messages the CRD gave
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			want := validateWithEgressd(t, docs[name])
			if len(want) != 1 {
				t.Fatalf("egressd: %v; want one problem per document", want)
			}
			got := validateWithCRD(t, s, docs[name])
			if len(got) != 1 {
				t.Fatalf("CRD: %v; want one error, egressd's %q", got, want[0])
			}
			msg := lineRef.ReplaceAllString(want[0].Message, "")
			if got[0].message != msg {
				t.Errorf("CRD message\n  %s\nwant egressd's\n  %s", got[0].message, msg)
			}
			f := want[0].Field
			if got[0].field != f && !strings.HasPrefix(f, got[0].field+"[") {
				t.Errorf("CRD field %s, egressd's %s", got[0].field, f)
			}
			seen[got[0].message] = true
		})
	}
	// Every rule of the schema is exercised: its message (or, for a
	// messageExpression, its fixed tail) is among those given.
	var walk func(path string, s *schema.Structural)
	walk = func(path string, s *schema.Structural) {
		for i, r := range s.XValidations {
			want := r.Message
			if r.MessageExpression != "" {
				want = tail(r.MessageExpression)
			}
			found := false
			for m := range seen {
				found = found || strings.HasSuffix(m, want)
			}
			if !found {
				t.Errorf("%s rule %d (%s): no document of testdata/egressrules-invalid.yaml breaks it", path, i, r.Rule)
			}
		}
		for name, p := range s.Properties {
			walk(path+"."+name, &p)
		}
		if s.Items != nil {
			walk(path+"[*]", s.Items)
		}
	}
	walk("", s)
}

// TestCRDAcceptsWhatEgressdAccepts: the documents of
// testdata/egressrules-valid.yaml (the seed example among them) pass both.
func TestCRDAcceptsWhatEgressdAccepts(t *testing.T) {
	s := egressRuleSchema(t)
	names, docs := egressRuleDocs(t, "egressrules-valid.yaml")
	if len(names) == 0 {
		t.Fatal("no documents")
	}
	for _, name := range names {
		if p := validateWithEgressd(t, docs[name]); len(p) > 0 {
			t.Errorf("%s: egressd: %v", name, p)
		}
		if p := validateWithCRD(t, s, docs[name]); len(p) > 0 {
			t.Errorf("%s: CRD: %v", name, p)
		}
	}
}

// celString is a single-quoted CEL string literal.
var celString = regexp.MustCompile(`'(?:[^'\\]|\\.)*'`)

// tail is the last string literal of a messageExpression, without its
// quotes and CEL escapes: the fixed end of the message it builds.
func tail(expr string) string {
	all := celString.FindAllString(expr, -1)
	if len(all) == 0 {
		return expr
	}
	s := all[len(all)-1]
	s = strings.NewReplacer(`\'`, `'`, `\"`, `"`).Replace(s[1 : len(s)-1])
	if i := strings.LastIndex(s, "%"); i >= 0 { // a format string: what follows its last verb
		s = s[i+2:]
	}
	return s
}
