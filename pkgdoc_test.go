package egressd_test

import (
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// packages lists every package directory of the module (except testdata).
func packages(t *testing.T) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if path != "." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
			return filepath.SkipDir
		}
		if _, err := build.ImportDir(path, 0); err == nil {
			dirs = append(dirs, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

// TestPackageDocs checks that every package states its job in a doc comment.
func TestPackageDocs(t *testing.T) {
	for _, dir := range packages(t) {
		if dir == "." {
			continue
		}
		bp, err := build.ImportDir(dir, 0)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		if len(bp.GoFiles) == 0 {
			continue // tests only (deploy): no package to document
		}
		documented := false
		fset := token.NewFileSet()
		for _, name := range bp.GoFiles { // the package's non-test files for this build
			f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.ParseComments|parser.PackageClauseOnly)
			if err != nil {
				t.Fatalf("parse %s: %v", name, err)
			}
			if f.Doc != nil && len(strings.TrimSpace(f.Doc.Text())) > 20 {
				documented = true
			}
		}
		if !documented {
			t.Errorf("package %s (%s) has no package doc comment", bp.Name, dir)
		}
	}
}

// TestPackageDocsNameFiles checks that the doc of l7 and of each package
// under it names every one of its non-test files (doc.go aside; a package
// of one file is its doc), so that a reader finds each file's role there
// (issue 19).
func TestPackageDocsNameFiles(t *testing.T) {
	for _, dir := range packages(t) {
		if dir != "l7" && !strings.HasPrefix(dir, "l7/") {
			continue
		}
		bp, err := build.ImportDir(dir, 0)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		var doc strings.Builder
		fset := token.NewFileSet()
		for _, name := range bp.GoFiles {
			f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.ParseComments|parser.PackageClauseOnly)
			if err != nil {
				t.Fatalf("parse %s: %v", name, err)
			}
			if f.Doc != nil {
				doc.WriteString(f.Doc.Text())
			}
		}
		for _, name := range bp.GoFiles {
			if len(bp.GoFiles) > 1 && name != "doc.go" && !strings.Contains(doc.String(), name) {
				t.Errorf("package %s (%s): its doc does not name %s", bp.Name, dir, name)
			}
		}
	}
}

// TestDependencyDirection keeps the layering of docs/design.md: rules and l7 know
// nothing of BPF, l7 does not reach into redirect, and the agent links
// nothing of k8s.io or sigs.k8s.io nor of Prometheus's libraries (its
// tests may).
func TestDependencyDirection(t *testing.T) {
	forbidden := map[string][]string{
		"./rules/...": {"github.com/cilium/ebpf", "github.com/egressd/egressd/redirect", "github.com/egressd/egressd/l7", "github.com/egressd/egressd/bpf"},
		"./l7/...":    {"github.com/cilium/ebpf", "github.com/egressd/egressd/redirect", "github.com/egressd/egressd/bpf"},
		// The agent's resident memory is mostly its binary's file pages
		// (issue 20). client-go and apimachinery were ~3 MiB of it at
		// every start: kube/internal/apiclient talks to the API instead.
		// client_golang links protobuf, procfs and client_model (~2 MB of
		// the stripped binary) and procfs compiles regexps at every start:
		// internal/metric instead. Tests may use them.
		"./cmd/egressd/...": {"k8s.io", "sigs.k8s.io", "github.com/prometheus", "google.golang.org/protobuf"},
	}
	for pattern, bad := range forbidden {
		if _, err := os.Stat(strings.TrimSuffix(pattern, "/...")); err != nil {
			continue // package not written yet
		}
		out, err := exec.Command("go", "list", "-deps", pattern).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pattern, err, out)
		}
		deps := strings.Fields(string(out))
		for _, d := range deps {
			for _, b := range bad {
				if d == b || strings.HasPrefix(d, b+"/") {
					t.Errorf("%s depends on %s; docs/design.md keeps it free of that", pattern, d)
				}
			}
		}
	}
}

// Size bounds of issue 19: a package small enough to hold in one's head,
// a file small enough to read at a sitting.
const (
	maxPackageLines = 2500 // every line of its non-test files, comments and blank lines too
	maxFileLines    = 400  // every line, non-test files
)

// TestPackageSizes keeps every package of the product under
// maxPackageLines lines and every non-test file under maxFileLines lines;
// generated files (bpf2go's bindings) aside.
func TestPackageSizes(t *testing.T) {
	for _, dir := range packages(t) {
		bp, err := build.ImportDir(dir, 0)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		lines := 0
		for _, name := range bp.GoFiles {
			path := filepath.Join(dir, name)
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, path, src, parser.ParseComments|parser.PackageClauseOnly)
			if err != nil {
				t.Fatalf("parse %s: %v", path, err)
			}
			if ast.IsGenerated(f) {
				continue
			}
			n := strings.Count(string(src), "\n")
			if n > maxFileLines {
				t.Errorf("%s: %d lines, over %d: split it by concern", path, n, maxFileLines)
			}
			lines += n
		}
		t.Logf("%s: %d lines", dir, lines)
		if lines > maxPackageLines {
			t.Errorf("package %s (%s): %d lines, over %d: split it by concern", bp.Name, dir, lines, maxPackageLines)
		}
	}
}
