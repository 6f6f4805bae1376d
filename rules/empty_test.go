package rules

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
)

const noRulesWarning = "no EgressRule documents found: every request will be denied"

// A rules file with no EgressRule loads as an empty set that denies
// everything; the Reloader says so in its log when it loads such a version,
// at start and at each reload.
func TestReloaderWarnsWithoutRules(t *testing.T) {
	path := writeFile(t, t.TempDir(), "r.yaml", "")
	var logs bytes.Buffer
	r, err := NewReloader([]string{path}, ReloaderOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("NewReloader: %v", err)
	}
	if r.Current().Len() != 0 || !strings.Contains(logs.String(), noRulesWarning) {
		t.Fatalf("start: %d rules, log:\n%s\nwant 0 rules and %q", r.Current().Len(), logs.String(), noRulesWarning)
	}
	logs.Reset()
	writeFile(t, filepath.Dir(path), "r.yaml", "kind: ConfigMap\nmetadata: {name: x}\n") // only another kind
	if err := r.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if !strings.Contains(logs.String(), noRulesWarning) {
		t.Fatalf("reload: log:\n%s\nwant %q", logs.String(), noRulesWarning)
	}
}
