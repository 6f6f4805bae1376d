package kube

import (
	"os"
	"path/filepath"
	"testing"
)

func TestGlobalNamespace(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "namespace")
	env := func(v string) func(string) string { return func(string) string { return v } }
	if got := globalNamespace(file, env("")); got != FallbackGlobalNamespace {
		t.Errorf("neither file nor env: %q", got)
	}
	if got := globalNamespace(file, env("from-env")); got != "from-env" {
		t.Errorf("env only: %q", got)
	}
	if err := os.WriteFile(file, []byte("egressd-system\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := globalNamespace(file, env("from-env")); got != "egressd-system" {
		t.Errorf("the service account's file wins: %q", got)
	}
}
