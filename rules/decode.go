package rules

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// unquotedWildcard finds a block-style "service: *.foo.com" whose value is
// not quoted. YAML reads "*.foo.com" as an alias to an anchor named
// ".foo.com", but the reference page writes it that way, and users copy it.
// flowWildcard is the same in flow style: "{service: *.foo.com}". Group 2
// is the value, from its '*'.
var (
	unquotedWildcard = regexp.MustCompile(`(?m)^([ \t]*(?:-[ \t]+)?service[ \t]*:[ \t]+)(\*[^\s#]*)([ \t]*(?:#.*)?)$`)
	flowWildcard     = regexp.MustCompile(`([{,][ \t]*service[ \t]*:[ \t]+)(\*[^\s#,{}\[\]]*)`)
)

// markServiceWildcards lets such values parse as plain scalars: it
// replaces their '*' with mark, a word found nowhere in data, and
// unmarkWildcards puts the '*' back in every parsed scalar. The pattern
// also matches lines inside block scalars ("|", ">") and multi-line quoted
// strings, where the replacement changes nothing YAML reads; there the mark
// is only text, and unmarking restores that text as written. A value that
// names an anchor defined in the file ("&svc" ... "service: *svc") is a
// real alias and is left alone. mark is "" when nothing was replaced.
func markServiceWildcards(data []byte) (out []byte, mark string) {
	mark = "egressdwildcard"
	for bytes.Contains(data, []byte(mark)) {
		mark += "x"
	}
	var anchors map[string]bool
	if bytes.IndexByte(data, '&') >= 0 {
		anchors = anchorsIn(data)
	}
	var stars []int // offsets of the '*' to replace
	for _, re := range [...]*regexp.Regexp{unquotedWildcard, flowWildcard} {
		for _, m := range re.FindAllSubmatchIndex(data, -1) {
			alias := string(data[m[4]+1 : m[5]])
			if !anchors[alias] && !anchors[strings.TrimRight(alias, ",]}")] {
				stars = append(stars, m[4])
			}
		}
	}
	if len(stars) == 0 {
		return data, ""
	}
	slices.Sort(stars)
	stars = slices.Compact(stars) // a line can match both patterns
	out = make([]byte, 0, len(data)+len(stars)*len(mark))
	last := 0
	for _, i := range stars {
		out = append(append(out, data[last:i]...), mark...)
		last = i + 1
	}
	return append(out, data[last:]...), mark
}

// anchorName finds an anchor "&name" (YAML ends its name at whitespace and
// flow indicators).
var anchorName = regexp.MustCompile(`&([^\s,\[\]{}]+)`)

// anchorsIn returns the anchor names in data.
func anchorsIn(data []byte) map[string]bool {
	names := make(map[string]bool)
	for _, m := range anchorName.FindAllSubmatch(data, -1) {
		names[string(m[1])] = true
	}
	return names
}

// unmarkWildcards replaces mark with '*' in every scalar under n. The plain
// (unquoted) scalars it changes are the values kubectl would read as
// aliases: it records them in unquoted, for the warning. A mark in a block
// scalar ("|", ">") or a quoted string is only text there, which kubectl
// reads as written (a ConfigMap's rule file, say).
func unmarkWildcards(n *yaml.Node, mark string, unquoted map[*yaml.Node]bool) {
	if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, mark) {
		n.Value = strings.ReplaceAll(n.Value, mark, "*")
		if n.Style&(yaml.LiteralStyle|yaml.FoldedStyle|yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle) == 0 {
			unquoted[n] = true
		}
	}
	for _, c := range n.Content {
		unmarkWildcards(c, mark, unquoted)
	}
}

// unknownAnchor finds the alias in yaml.v3's error for an undefined one.
var unknownAnchor = regexp.MustCompile(`^yaml: unknown anchor '(.*)' referenced$`)

// yamlLine finds the line in a yaml.v3 error message.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// decodeFile decodes every document of one file.
func (l *loader) decodeFile(file string, data []byte) {
	marked, mark := markServiceWildcards(data)
	dec := yaml.NewDecoder(bytes.NewReader(marked))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			l.yamlError(file, data, err)
			return // the parser cannot resume after a syntax error
		}
		if mark != "" {
			if l.unquoted == nil {
				l.unquoted = make(map[*yaml.Node]bool)
			}
			unmarkWildcards(&doc, mark, l.unquoted)
		}
		l.decodeDocument(file, &doc)
	}
}

// warnUnquoted warns of an unquoted "service: *.foo.com" (sv, a plain
// scalar that unmarkWildcards restored): egressd reads it as written, but
// kubectl's YAML parser reads an alias and refuses the manifest ("unknown
// anchor '.foo.com' referenced").
func (l *loader) warnUnquoted(file string, sv *yaml.Node) {
	if !l.unquoted[sv] {
		return
	}
	l.kubectlQuoting++
	l.warn(file, sv.Line, "spec.destination.service", "%s is unquoted: egressd reads it as written, but kubectl reads an alias and refuses the manifest; quote it for kubectl apply: service: \"%s\"", sv.Value, sv.Value)
}

func (l *loader) yamlError(file string, data []byte, err error) {
	if m := unknownAnchor.FindStringSubmatch(err.Error()); m != nil {
		line := 0
		if i := bytes.Index(data, []byte("*"+m[1])); i >= 0 {
			line = 1 + bytes.Count(data[:i], []byte("\n"))
		}
		l.problem(file, line, "", "invalid YAML: *%s reads as an alias to an undefined anchor; quote a wildcard: \"*%s\"", m[1], m[1])
		return
	}
	for _, msg := range strings.Split(err.Error(), "\n") {
		msg = strings.TrimSpace(strings.TrimPrefix(msg, "yaml: unmarshal errors:"))
		if msg == "" {
			continue
		}
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			l.problem(file, line, "", "invalid YAML: %s", m[2])
			continue
		}
		l.problem(file, 0, "", "invalid YAML: %s", strings.TrimPrefix(msg, "yaml: "))
	}
}

// decodeDocument decodes one document: an EgressRule, a document of another
// kind (skipped with a warning), an empty document, or a list of documents.
func (l *loader) decodeDocument(file string, doc *yaml.Node) {
	n := doc
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		n = n.Content[0]
	}
	n = resolve(n)
	switch {
	case n.Kind == yaml.ScalarNode && n.Tag == "!!null":
		return // an empty document, e.g. after a trailing "---"
	case n.Kind == yaml.SequenceNode:
		for _, item := range n.Content {
			l.decodeDocument(file, item)
		}
		return
	case n.Kind != yaml.MappingNode:
		l.problem(file, n.Line, "", "a document must be a mapping with kind: EgressRule, found %s", describe(n))
		return
	}
	kind := mappingValue(n, "kind")
	if kind == nil {
		l.problem(file, n.Line, "kind", "missing; add kind: EgressRule")
		return
	}
	switch k := l.str(file, kind, "kind"); k {
	case "EgressRule":
	case DenyAllKind:
		l.fields(file, n, "", "apiVersion", "kind", "metadata")
		l.denyAll = append(l.denyAll, Problem{File: file, Line: n.Line})
		return
	default:
		if k != "" {
			l.warn(file, kind.Line, "kind", "%s is not an EgressRule; document skipped", k)
		}
		return
	}
	top, _ := l.fields(file, n, "", "apiVersion", "kind", "metadata", "spec")
	if v, ok := top["apiVersion"]; ok {
		if av := l.str(file, v, "apiVersion"); av != "" && av != "config.istio.io/v1alpha2" {
			l.warn(file, v.Line, "apiVersion", "%q is not config.istio.io/v1alpha2; read as an EgressRule anyway", av)
		}
	}
	r := &loadedRule{rule: &Rule{Source: file + ":" + strconv.Itoa(n.Line)}, file: file}
	if l.documents {
		r.rule.Source = file
	}
	if md, ok := top["metadata"]; ok {
		r.rule.Name = l.metadata(file, md)
	}
	if r.rule.Name == "" {
		r.rule.Name = r.rule.Source
	}
	spec, ok := top["spec"]
	if !ok {
		l.problem(file, n.Line, "spec", "missing; add spec: with destination: and ports:")
		return
	}
	quoting := l.kubectlQuoting
	if l.spec(file, spec, r) {
		l.rules = append(l.rules, *r)
	}
	// A document written for egressd alone (the reference page's example):
	// say all kubectl apply needs of it, beside the quoting.
	if l.kubectlQuoting > quoting {
		var missing []string
		if top["apiVersion"] == nil {
			missing = append(missing, "apiVersion: config.istio.io/v1alpha2")
		}
		if r.rule.Name == r.rule.Source {
			missing = append(missing, "metadata.name")
		}
		if len(missing) > 0 {
			l.warn(file, n.Line, "", "for kubectl apply (an EgressRule object, deploy/crd-egressrule.yaml) also add %s", strings.Join(missing, " and "))
		}
	}
}

// metadataFields are the fields of a Kubernetes ObjectMeta; only name is used.
var metadataFields = []string{
	"name", "generateName", "namespace", "selfLink", "uid", "resourceVersion",
	"generation", "creationTimestamp", "deletionTimestamp",
	"deletionGracePeriodSeconds", "labels", "annotations", "ownerReferences",
	"finalizers", "managedFields",
}

func (l *loader) metadata(file string, md *yaml.Node) string {
	fs, _ := l.fields(file, md, "metadata", metadataFields...)
	if n, ok := fs["name"]; ok {
		return l.str(file, n, "metadata.name")
	}
	return ""
}

// mappingValue returns the value of key in mapping n, or nil.
func mappingValue(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return resolve(n.Content[i+1])
		}
	}
	return nil
}

// resolve follows YAML aliases.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func describe(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return "the value " + strconv.Quote(n.Value)
}

// fields returns the value nodes of mapping n by key, reporting unknown
// keys (with a suggestion) and repeated keys. ok is false, with a problem
// reported, when n is not a mapping.
func (l *loader) fields(file string, n *yaml.Node, path string, known ...string) (fs map[string]*yaml.Node, ok bool) {
	n = resolve(n)
	out := make(map[string]*yaml.Node)
	if n.Kind != yaml.MappingNode {
		l.problem(file, n.Line, path, "must be a mapping of fields, found %s", describe(n))
		return out, false
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolve(n.Content[i+1])
		field := join(path, k.Value)
		if _, dup := out[k.Value]; dup {
			l.problem(file, k.Line, field, "appears twice; keep one")
			continue
		}
		if !contains(known, k.Value) {
			l.problem(file, k.Line, field, "unknown field%s", suggest(k.Value, known))
			continue
		}
		out[k.Value] = v
	}
	return out, true
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// suggest names the known field an unknown one was probably meant to be
// ("use_egress_proxy", "UseEgressProxy" → "useEgressProxy"), else lists them.
func suggest(got string, known []string) string {
	fold := func(s string) string { return strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(s)) }
	for _, k := range known {
		if fold(k) == fold(got) {
			return "; did you mean " + k + "?"
		}
	}
	if len(known) > 6 {
		return ""
	}
	return "; valid fields here: " + strings.Join(known, ", ")
}

// str returns the value of a scalar node, reporting anything else.
func (l *loader) str(file string, n *yaml.Node, field string) string {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		l.problem(file, n.Line, field, "must be a string, found %s", describe(n))
		return ""
	}
	return n.Value
}
