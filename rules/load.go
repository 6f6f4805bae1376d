package rules

import (
	"crypto/sha256"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Problem is one thing wrong in a rule file, or worth a warning.
type Problem struct {
	File    string
	Line    int    // 0: about the whole file
	Field   string // the path of the field, e.g. "spec.ports[1].protocol"; "" for the document
	Message string // what is wrong and how to fix it
}

// String formats the problem as "file:line: field: message".
func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			b.WriteString(":" + strconv.Itoa(p.Line))
		}
		b.WriteString(": ")
	}
	if p.Field != "" {
		b.WriteString(p.Field + ": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Warning is a Problem that does not stop the rules from loading: a document
// of another kind, an ignored field, a directory without rule files.
type Warning = Problem

// Error is the error Load returns for invalid rules. It lists every problem
// found in one run.
type Error struct {
	Problems []Problem
}

// Error returns the problems, one per line.
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Load reads the rule files at paths, validates them and compiles them into
// a Set. A path is a file (read whatever its name), or a directory whose
// *.yaml, *.yml and *.json files are read, not recursively, skipping hidden
// entries (so a mounted ConfigMap's "..data" and "..2024_..." entries are not
// read twice). On invalid rules the error is an *Error holding every
// problem; warnings are returned in both cases.
func Load(paths ...string) (*Set, []Warning, error) {
	s, warnings, _, err := load(paths)
	return s, warnings, err
}

// load is Load that also returns the digest of the files read, valid or not.
func load(paths []string) (*Set, []Warning, [32]byte, error) {
	l := &loader{sum: sha256.New(), seen: make(map[string]bool)}
	if len(paths) == 0 {
		l.problem("", 0, "", "no rule files given; name a file or a directory")
	}
	for _, p := range paths {
		l.loadPath(p)
	}
	var sum [32]byte
	copy(sum[:], l.sum.Sum(nil))
	s, err := l.finish()
	return s, l.warnings, sum, err
}

// finish checks what spans rules and compiles them.
func (l *loader) finish() (*Set, error) {
	l.checkConflicts()
	sort.SliceStable(l.problems, func(i, j int) bool {
		a, b := l.problems[i], l.problems[j]
		return a.File < b.File || a.File == b.File && a.Line < b.Line
	})
	if len(l.problems) > 0 {
		return nil, &Error{Problems: l.problems}
	}
	rs := make([]*Rule, len(l.rules))
	for i, r := range l.rules {
		rs[i] = r.rule
	}
	s, err := Compile(rs)
	if err != nil { // validation above refuses all Compile refuses
		return nil, &Error{Problems: []Problem{{Message: err.Error()}}}
	}
	if len(rs) == 0 {
		l.warn("", 0, "", "no EgressRule documents found: every request will be denied")
	}
	s.files = l.files
	return s, nil
}

// loader accumulates what Load finds across files.
type loader struct {
	problems []Problem
	warnings []Warning
	rules    []loadedRule
	files    []string
	seen     map[string]bool // absolute paths already read
	sum      hash.Hash
}

// loadedRule is a decoded rule with the places validation messages need.
type loadedRule struct {
	rule      *Rule
	file      string
	portLines []int
}

func (l *loader) problem(file string, line int, field, format string, args ...any) {
	l.problems = append(l.problems, Problem{file, line, field, fmt.Sprintf(format, args...)})
}

func (l *loader) warn(file string, line int, field, format string, args ...any) {
	l.warnings = append(l.warnings, Warning{file, line, field, fmt.Sprintf(format, args...)})
}

// loadPath reads a file or the rule files of a directory.
func (l *loader) loadPath(path string) {
	fi, err := os.Stat(path)
	if err != nil {
		l.problem(path, 0, "", "cannot read: %v; check the path", err)
		return
	}
	if !fi.IsDir() {
		l.loadFile(path)
		return
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		l.problem(path, 0, "", "cannot list directory: %v", err)
		return
	}
	n := 0
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !isRuleFile(name) {
			continue // hidden: editor files, and a ConfigMap's ..data and ..<timestamp> entries
		}
		full := filepath.Join(path, name)
		if fi, err := os.Stat(full); err == nil && fi.IsDir() {
			l.warn(full, 0, "", "is a directory; subdirectories are not read")
			continue
		}
		l.loadFile(full)
		n++
	}
	if n == 0 {
		l.warn(path, 0, "", "has no *.yaml, *.yml or *.json files")
	}
}

func isRuleFile(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// loadFile reads one file once, however it was named.
func (l *loader) loadFile(path string) {
	if abs, err := filepath.Abs(path); err == nil {
		if l.seen[abs] {
			return
		}
		l.seen[abs] = true
	}
	data, err := os.ReadFile(path)
	if err != nil {
		l.problem(path, 0, "", "cannot read: %v; check the path and its permissions", err)
		return
	}
	l.files = append(l.files, path)
	fmt.Fprintf(l.sum, "%s\x00%d\x00", path, len(data))
	l.sum.Write(data)
	l.decodeFile(path, data)
}
