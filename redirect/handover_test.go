package redirect

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// TestHandoverToken: the token a successor opens from the pin directory
// passes the serving agent's check, before and after the successor took
// the pins over (both agents then share the original-destination map);
// another BPF map, or a file that is none, does not.
func TestHandoverToken(t *testing.T) {
	tp := newTopo(t)
	old := tp.attach(t, tp.options())
	check := func(what string, r *Redirector, f *os.File, ok bool) {
		t.Helper()
		if err := r.CheckHandoverToken(f); (err == nil) != ok {
			t.Errorf("%s: CheckHandoverToken = %v, want ok=%v", what, err, ok)
		}
	}
	tok, err := HandoverToken(tp.pinDir)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	check("the pinned map", old, tok, true)
	next := tp.attach(t, tp.options())
	check("after the takeover, at the old agent", old, tok, true)
	check("after the takeover, at the new agent", next, tok, true)

	other, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	fd, err := unix.Dup(other.FD())
	if err != nil {
		t.Fatal(err)
	}
	of := os.NewFile(uintptr(fd), "other")
	defer of.Close()
	check("another map", old, of, false)
	f, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	check("a plain file", old, f, false)
	if _, err := HandoverToken(filepath.Join(tp.pinDir, "none")); err == nil {
		t.Error("HandoverToken of an empty pin directory succeeded")
	}
}
