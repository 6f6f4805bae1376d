package rules

import (
	"bytes"
	"errors"
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

// From rules to none takes a document that says so: an emptied file, a
// file holding only other kinds, or an emptied ConfigMap is refused and the
// rules in force keep serving; a DenyAllEgress document is put in force and
// denies everything; from none, rules load again.
func TestReloadToNoRulesNeedsDenyAll(t *testing.T) {
	cm := newConfigMap(t)
	cm.publish(map[string]string{"rules.yaml": hostRule("a.test")})
	var refused []error
	r, err := NewReloader([]string{cm.dir}, ReloaderOptions{OnReload: func(err error) {
		if err != nil {
			refused = append(refused, err)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name   string
		files  map[string]string
		refuse bool
		allows bool // a.test after the step
	}{
		{"emptied file", map[string]string{"rules.yaml": ""}, true, true},
		{"only another kind", map[string]string{"rules.yaml": "kind: ConfigMap\nmetadata: {name: x}\n"}, true, true},
		{"emptied ConfigMap", map[string]string{}, true, true},
		{"deny all, said so", map[string]string{"deny.yaml": "apiVersion: config.istio.io/v1alpha2\nkind: DenyAllEgress\nmetadata: {name: lockdown}\n"}, false, false},
		{"still none", map[string]string{"rules.yaml": ""}, false, false},
		{"rules again", map[string]string{"rules.yaml": hostRule("a.test")}, false, true},
		{"emptied again", map[string]string{"rules.yaml": "# nothing\n"}, true, true},
	}
	for i, st := range steps {
		cm.publish(st.files)
		err := r.Reload()
		if refusedNow := err != nil; refusedNow != st.refuse {
			t.Fatalf("step %d (%s): Reload() = %v, want refused %v", i, st.name, err, st.refuse)
		}
		if err != nil && !strings.Contains(err.Error(), "kind: DenyAllEgress") {
			t.Errorf("step %d (%s): the error does not say how to deny all on purpose: %v", i, st.name, err)
		}
		if got := allows(r.Current(), "a.test"); got != st.allows {
			t.Errorf("step %d (%s): a.test allowed %v, want %v", i, st.name, got, st.allows)
		}
	}
	if st := r.Stats(); st.Failures != 4 || !st.LastFailed || len(refused) != 4 {
		t.Errorf("stats %+v, %d refusals reported; want 4 failures, the last refused", st, len(refused))
	}
}

// A DenyAllEgress document beside rules changes nothing but a warning; a
// field it does not have is a problem.
func TestDenyAllDocument(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a.yaml", hostRule("a.test"))
	writeFile(t, dir, "deny.yaml", "kind: DenyAllEgress\n")
	s, warns, err := Load(dir)
	if err != nil || !allows(s, "a.test") || len(warns) != 1 || !strings.Contains(warns[0].String(), "deny.yaml:1: kind: DenyAllEgress has no effect beside 1 EgressRule(s)") {
		t.Fatalf("Load: %v, warnings %v", err, warns)
	}
	writeFile(t, dir, "deny.yaml", "kind: DenyAllEgress\nspec: {}\n")
	if _, _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "deny.yaml:2: spec: unknown field") {
		t.Fatalf("Load with spec: %v, want spec refused", err)
	}
}

// Check vets the first version (its error fails NewReloader) and every
// reload (its error keeps the rules in force).
func TestReloaderCheck(t *testing.T) {
	noBad := func(s *Set) error {
		if allows(s, "bad.test") {
			return errors.New("bad.test is not allowed here")
		}
		return nil
	}
	dir := t.TempDir()
	path := writeFile(t, dir, "r.yaml", hostRule("bad.test"))
	if _, err := NewReloader([]string{path}, ReloaderOptions{Check: noBad}); err == nil || err.Error() != "rules: bad.test is not allowed here" {
		t.Fatalf("NewReloader = %v, want the check's error", err)
	}
	writeFile(t, dir, "r.yaml", hostRule("good.test"))
	var reported error
	r, err := NewReloader([]string{path}, ReloaderOptions{Check: noBad, OnReload: func(err error) { reported = err }})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "r.yaml", hostRule("good.test")+"---\n"+hostRule("bad.test"))
	if err := r.Reload(); err == nil || reported != err {
		t.Fatalf("Reload = %v (reported %v), want the check's error", err, reported)
	}
	if !allows(r.Current(), "good.test") || allows(r.Current(), "bad.test") || !r.Stats().LastFailed {
		t.Fatalf("after the refused version: good %v, bad %v, stats %+v", allows(r.Current(), "good.test"), allows(r.Current(), "bad.test"), r.Stats())
	}
}

// LastFailed (egressd_rules_last_reload_failed) clears when the files go
// back to the version in force after a refused one, on a file event and on
// SIGHUP alike.
func TestLastFailedClearsWhenFilesRevert(t *testing.T) {
	for _, force := range []bool{false, true} {
		path := writeFile(t, t.TempDir(), "r.yaml", hostRule("a.test"))
		r, err := NewReloader([]string{path}, ReloaderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Dir(path), "r.yaml", invalidRule)
		if err := r.reload(force); err == nil || !r.Stats().LastFailed {
			t.Fatalf("force=%v: invalid version: %v, stats %+v", force, err, r.Stats())
		}
		writeFile(t, filepath.Dir(path), "r.yaml", hostRule("a.test"))
		if err := r.reload(force); err != nil || r.Stats().LastFailed {
			t.Errorf("force=%v: back to the rules in force: %v, stats %+v; want LastFailed false", force, err, r.Stats())
		}
		// The same refused edit again is refused (and counted) again.
		writeFile(t, filepath.Dir(path), "r.yaml", invalidRule)
		if err := r.reload(force); err == nil || !r.Stats().LastFailed || r.Stats().Failures != 2 {
			t.Errorf("force=%v: the invalid version again: %v, stats %+v; want refused, 2 failures", force, err, r.Stats())
		}
	}
}
