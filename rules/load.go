package rules

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
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

// DenyAllKind is the kind of a document that says a version without
// EgressRules is meant: every request denied. A Reloader refuses to go from
// rules to none without it (see Reloader).
const DenyAllKind = "DenyAllEgress"

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
// read twice); one with a ..data entry (a mounted ConfigMap) is read through
// ..data, resolved once. On invalid rules the error is an *Error holding every
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
	switch {
	case len(rs) == 0 && len(l.denyAll) == 0:
		l.warn("", 0, "", "no EgressRule documents found: every request will be denied")
	case len(rs) > 0 && len(l.denyAll) > 0:
		l.warn(l.denyAll[0].File, l.denyAll[0].Line, "", "kind: %s has no effect beside %d EgressRule(s), which allow what they list; remove it", DenyAllKind, len(rs))
	}
	s.files = l.files
	s.denyAll = len(l.denyAll) > 0
	return s, nil
}

// loader accumulates what Load finds across files.
type loader struct {
	problems       []Problem
	warnings       []Warning
	rules          []loadedRule
	files          []string
	denyAll        []Problem           // where each DenyAllEgress document is (File, Line)
	seen           map[string]bool     // absolute paths already read
	unquoted       map[*yaml.Node]bool // service values kubectl would read as aliases (decode.go)
	kubectlQuoting int                 // quoting warnings given
	sum            hash.Hash
	// documents: reading LoadDocuments' Documents, whose problems carry
	// no line numbers and whose rules' Source is the document's.
	documents bool
}

// loadedRule is a decoded rule with the places validation messages need.
type loadedRule struct {
	rule      *Rule
	file      string
	portLines []int
}

func (l *loader) problem(file string, line int, field, format string, args ...any) {
	if l.documents {
		line = 0
	}
	l.problems = append(l.problems, Problem{file, line, field, fmt.Sprintf(format, args...)})
}

func (l *loader) warn(file string, line int, field, format string, args ...any) {
	if l.documents {
		line = 0
	}
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
		data, err := os.ReadFile(path)
		if err != nil {
			l.problems = append(l.problems, readProblem(path, err))
			return
		}
		l.useFile(path, data)
		return
	}
	l.loadDir(path)
}

// dataLink is the entry of a directory mounted from a ConfigMap or Secret
// that points to the directory of the current version.
const dataLink = "..data"

// loadDir reads the rule files of directory path. A directory with a
// ..data entry (a mounted ConfigMap) is read through ..data resolved once:
// the kubelet writes a new version to a new directory, swaps ..data to it,
// then removes the old one, so reading each file through its own symlink
// could mix two versions. When the version read is removed midway, the
// read starts over in the new one.
func (l *loader) loadDir(path string) {
	for attempt := 1; ; attempt++ {
		from, linked := resolveDataLink(path)
		d := &dirRead{}
		d.read(path, from)
		if d.vanished && linked && attempt < 3 {
			if again, _ := resolveDataLink(path); again != from {
				continue
			}
		}
		l.problems = append(l.problems, d.problems...)
		l.warnings = append(l.warnings, d.warnings...)
		for _, f := range d.files {
			l.useFile(f.name, f.data)
		}
		return
	}
}

// resolveDataLink returns the directory path's ..data points to, and
// whether there is one; else path itself.
func resolveDataLink(path string) (string, bool) {
	target, err := filepath.EvalSymlinks(filepath.Join(path, dataLink))
	if err != nil {
		return path, false
	}
	if fi, err := os.Stat(target); err != nil || !fi.IsDir() {
		return path, false
	}
	return target, true
}

// dirRead is one reading of a directory's rule files.
type dirRead struct {
	files    []readRuleFile
	problems []Problem
	warnings []Warning
	vanished bool // a file listed was gone when read
}

type readRuleFile struct {
	name string // as reported: in the directory given
	data []byte
}

// read lists from (path, or the directory its ..data points to) and reads
// its rule files, naming them as entries of path.
func (d *dirRead) read(path, from string) {
	entries, err := os.ReadDir(from)
	if err != nil {
		d.problems = append(d.problems, Problem{path, 0, "", fmt.Sprintf("cannot list directory: %v", err)})
		d.vanished = errors.Is(err, fs.ErrNotExist)
		return
	}
	n := 0
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !isRuleFile(name) {
			continue // hidden: editor files, and a ConfigMap's ..data and ..<timestamp> entries
		}
		full, src := filepath.Join(path, name), filepath.Join(from, name)
		if fi, err := os.Stat(src); err == nil && fi.IsDir() {
			d.warnings = append(d.warnings, Warning{full, 0, "", "is a directory; subdirectories are not read"})
			continue
		}
		n++
		data, err := os.ReadFile(src)
		if err != nil {
			d.problems = append(d.problems, readProblem(full, err))
			d.vanished = d.vanished || errors.Is(err, fs.ErrNotExist)
			continue
		}
		d.files = append(d.files, readRuleFile{full, data})
	}
	if n == 0 {
		d.warnings = append(d.warnings, Warning{path, 0, "", "has no *.yaml, *.yml or *.json files"})
	}
}

func readProblem(path string, err error) Problem {
	return Problem{path, 0, "", fmt.Sprintf("cannot read: %v; check the path and its permissions", err)}
}

func isRuleFile(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// useFile decodes one file's data, once however the file was named.
func (l *loader) useFile(path string, data []byte) {
	if abs, err := filepath.Abs(path); err == nil {
		if l.seen[abs] {
			return
		}
		l.seen[abs] = true
	}
	l.files = append(l.files, path)
	fmt.Fprintf(l.sum, "%s\x00%d\x00", path, len(data))
	l.sum.Write(data)
	l.decodeFile(path, data)
}
