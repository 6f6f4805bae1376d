package rules

import "crypto/sha256"

// Document is one EgressRule read from elsewhere than a file: an object of
// the Kubernetes API, say.
type Document struct {
	// Source names the document in problems and in its Rule's Source,
	// e.g. "EgressRule team-a/foo"; messages carry no line numbers.
	Source string
	// Data is the document as YAML or JSON: apiVersion, kind, metadata
	// (name) and spec, as in a file.
	Data []byte
}

// LoadDocuments validates and compiles documents exactly as Load does
// files: the same decoder, the same checks and messages, the same
// conflicts refused. On invalid rules the error is an *Error holding every
// problem, each naming its document's Source. No documents give an empty
// Set without a warning: through an API, no objects is a state asked for.
func LoadDocuments(docs ...Document) (*Set, []Warning, error) {
	l := &loader{sum: sha256.New(), seen: make(map[string]bool), documents: true}
	for _, d := range docs {
		l.files = append(l.files, d.Source)
		l.decodeFile(d.Source, d.Data)
	}
	if len(docs) == 0 {
		s, err := Compile(nil)
		return s, nil, err
	}
	s, err := l.finish()
	return s, l.warnings, err
}
