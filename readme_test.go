package egressd_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestUpstreamErrorKindsDocumented keeps README's metrics table and the
// metric's help text in step with the kinds l7/internal/dialer's Failure returns
// (the second result of each of its return statements).
func TestUpstreamErrorKindsDocumented(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "l7/internal/dialer/failure.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	ast.Inspect(f, func(n ast.Node) bool {
		fn, ok := n.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "Failure" {
			return true
		}
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			if ret, ok := n.(*ast.ReturnStmt); ok && len(ret.Results) == 3 {
				if lit, ok := ret.Results[1].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					k, _ := strconv.Unquote(lit.Value)
					kinds = append(kinds, k)
				}
			}
			return true
		})
		return false
	})
	if len(kinds) < 5 {
		t.Fatalf("found kinds %q in l7/internal/dialer/failure.go; the test no longer finds them", kinds)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `egressd_upstream_errors_total` \\| kind \\(([^)]*)\\)").FindSubmatch(readme)
	if row == nil {
		t.Fatal("README.md has no egressd_upstream_errors_total row with kind (...)")
	}
	metrics, err := os.ReadFile("l7/internal/metrics/metrics.go")
	if err != nil {
		t.Fatal(err)
	}
	help := regexp.MustCompile(`Upstream failures by kind \(([^)]*)\)`).FindSubmatch(metrics)
	if help == nil {
		t.Fatal("l7/internal/metrics/metrics.go: no help text listing the kinds")
	}
	for _, k := range kinds {
		if !slices.Contains(strings.Split(string(row[1]), ", "), k) {
			t.Errorf("README.md's egressd_upstream_errors_total row lacks kind %q (has %s)", k, row[1])
		}
		if !slices.Contains(strings.Split(string(help[1]), ", "), k) {
			t.Errorf("l7/internal/metrics/metrics.go's help text lacks kind %q (has %s)", k, help[1])
		}
	}
}
