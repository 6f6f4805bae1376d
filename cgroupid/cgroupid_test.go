package cgroupid

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestIndexFindsNewDirectoriesAndBoundsWalks: a directory made after New
// is found at its first lookup; an unknown ID is walked for once per
// NegativeTTL, not once per lookup; a removed directory is forgotten at
// the next walk. (Any directory tree has inodes; the cgroup2 filesystem
// is not needed to test the index.)
func TestIndexFindsNewDirectoriesAndBoundsWalks(t *testing.T) {
	root := t.TempDir()
	x := New(root)
	if id, _ := ID(root); mustPath(t, x, id) != root {
		t.Fatal("root not indexed")
	}
	d := filepath.Join(root, "pod", "ctr")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	id, _ := ID(d)
	if got := mustPath(t, x, id); got != d {
		t.Fatalf("new directory: %q, want %q", got, d)
	}
	x.ttl = time.Hour
	walks := x.Walks()
	for range 100 {
		if _, ok := x.Path(1 << 62); ok {
			t.Fatal("found an ID that does not exist")
		}
	}
	if n := x.Walks() - walks; n != 1 {
		t.Errorf("%d walks for 100 lookups of one unknown ID, want 1", n)
	}
	if err := os.Remove(d); err != nil {
		t.Fatal(err)
	}
	x.ttl = 0
	x.Path(1 << 61) // walks again
	x.mu.Lock()
	_, still := x.paths[id]
	x.mu.Unlock()
	if still {
		t.Error("a removed directory is still indexed")
	}
}

func mustPath(t *testing.T, x *Index, id uint64) string {
	t.Helper()
	p, ok := x.Path(id)
	if !ok {
		t.Fatalf("ID %d not found", id)
	}
	return p
}
