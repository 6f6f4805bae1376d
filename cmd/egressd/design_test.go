package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/egressd/egressd/cmd/egressd/internal/envflag"
)

// designDoc is the repository's maintained design; its flag tables are
// generated from the FlagSets, so they cannot drift from the code.
const designDoc = "../../docs/design.md"

// TestDesignFlagTables checks that docs/design.md's tables of `egressd run`,
// `egressd gateway`, `egressd suggest`, `egressd check` and `egressd explain`
// flags are exactly what the FlagSets declare (name, environment twin,
// default, help). EGRESSD_UPDATE_DESIGN=1 rewrites them.
func TestDesignFlagTables(t *testing.T) {
	doc, err := os.ReadFile(designDoc)
	if err != nil {
		t.Fatal(err)
	}
	// explain's defaults of --rules and --admin are their twins' values.
	t.Setenv("EGRESSD_RULES", "")
	t.Setenv("EGRESSD_ADMIN", "")
	tables := map[string]*flag.FlagSet{
		"run":     newRunFlags(&runConfig{}, io.Discard),
		"gateway": newGatewayFlags(&gatewayConfig{}, io.Discard),
		"suggest": newSuggestFlags(&suggestConfig{}, io.Discard),
		"check":   newCheckFlags(&checkConfig{}, io.Discard),
		"explain": newExplainFlags(&explainConfig{}, io.Discard),
	}
	updated := doc
	for name, fs := range tables {
		begin := fmt.Sprintf("<!-- flags:%s (generated from the FlagSet; EGRESSD_UPDATE_DESIGN=1 go test ./cmd/egressd rewrites it) -->\n", name)
		const end = "<!-- end flags -->\n"
		i := bytes.Index(updated, []byte(begin))
		if i < 0 {
			t.Fatalf("%s: no %q marker", designDoc, strings.TrimSpace(begin))
		}
		j := bytes.Index(updated[i:], []byte(end))
		if j < 0 {
			t.Fatalf("%s: flags:%s table has no end marker", designDoc, name)
		}
		want := flagTable(fs)
		got := string(updated[i+len(begin) : i+j])
		if got != want {
			if os.Getenv("EGRESSD_UPDATE_DESIGN") == "" {
				t.Errorf("%s: the flags:%s table is not the FlagSet's; run EGRESSD_UPDATE_DESIGN=1 go test -run TestDesignFlagTables ./cmd/egressd\n got:\n%s\nwant:\n%s", designDoc, name, got, want)
			}
			updated = append(updated[:i+len(begin):i+len(begin)], append([]byte(want), updated[i+j:]...)...)
		}
	}
	if os.Getenv("EGRESSD_UPDATE_DESIGN") != "" && !bytes.Equal(updated, doc) {
		if err := os.WriteFile(designDoc, updated, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// flagTable renders a FlagSet as a Markdown table, in the FlagSet's order.
// check and explain read only the twins their help names ("(env
// EGRESSD_RULES)"); every flag of the others has one (envflag.Apply).
func flagTable(fs *flag.FlagSet) string {
	namedTwins := fs.Name() == "egressd check" || fs.Name() == "egressd explain"
	var b strings.Builder
	b.WriteString("| flag | environment | default | meaning |\n| --- | --- | --- | --- |\n")
	fs.VisitAll(func(f *flag.Flag) {
		_, usage := flag.UnquoteUsage(f)
		def := f.DefValue
		switch def {
		case "", "[]", "0", "0s", "false":
			def = "none"
		}
		usage = strings.ReplaceAll(usage, "|", `\|`)
		usage = strings.ReplaceAll(usage, "\n", " ")
		env := "`" + envflag.Name(f.Name) + "`"
		if namedTwins && !strings.Contains(usage, "(env "+envflag.Name(f.Name)+")") {
			env = "none"
		}
		fmt.Fprintf(&b, "| `--%s` | %s | %s | %s |\n", f.Name, env, def, usage)
	})
	return b.String()
}
