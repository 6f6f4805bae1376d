package rules

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A ConfigMap directory is read as one version even when the kubelet swaps
// ..data while the files are being read. a.yaml of the first version is a
// FIFO, so the read of it blocks until the test has published the second
// version; b.yaml is read after. With the old version's directory still
// there, both files come from it; with it removed (as the kubelet does),
// the read starts over and both come from the new one. Never a.yaml of one
// version with b.yaml of the other.
func TestLoadConfigMapDirReadsOneVersion(t *testing.T) {
	for _, tt := range []struct {
		name       string
		removeOld  bool
		want, deny []string
	}{
		{"old version kept", false, []string{"a1.test", "b1.test"}, []string{"a2.test", "b2.test"}},
		{"old version removed", true, []string{"a2.test", "b2.test"}, []string{"a1.test", "b1.test"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cm := newConfigMap(t)
			cm.publish(map[string]string{"a.yaml": "", "b.yaml": hostRule("b1.test")})
			fifo := filepath.Join(cm.dir, cm.cur, "a.yaml")
			if err := os.Remove(fifo); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Mkfifo(fifo, 0o644); err != nil {
				t.Fatal(err)
			}
			type result struct {
				s   *Set
				err error
			}
			loaded := make(chan result, 1)
			go func() {
				s, _, err := Load(cm.dir)
				loaded <- result{s, err}
			}()
			opened := make(chan *os.File, 1)
			go func() {
				f, err := os.OpenFile(fifo, os.O_WRONLY, 0) // returns once Load opened a.yaml
				if err != nil {
					t.Error(err)
				}
				opened <- f
			}()
			var w *os.File
			select {
			case w = <-opened:
			case <-time.After(20 * time.Second): // a bound against hanging
				t.Fatal("Load never opened a.yaml")
			}
			if !tt.removeOld {
				cm.cur = "" // publish then keeps the old directory
			}
			cm.publish(map[string]string{"a.yaml": hostRule("a2.test"), "b.yaml": hostRule("b2.test")})
			if _, err := w.WriteString(hostRule("a1.test")); err != nil {
				t.Fatal(err)
			}
			w.Close()
			var r result
			select {
			case r = <-loaded:
			case <-time.After(20 * time.Second):
				t.Fatal("Load did not return")
			}
			if r.err != nil {
				t.Fatalf("Load: %v", r.err)
			}
			for _, h := range tt.want {
				if !allows(r.s, h) {
					t.Errorf("%s denied", h)
				}
			}
			for _, h := range tt.deny {
				if allows(r.s, h) {
					t.Errorf("%s allowed: a file of the other version was read", h)
				}
			}
			want := []string{filepath.Join(cm.dir, "a.yaml"), filepath.Join(cm.dir, "b.yaml")}
			if got := r.s.Files(); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
				t.Errorf("Files = %v, want %v (named in the directory given)", got, want)
			}
		})
	}
}
