package redirect

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExemptCgroups: an exempt cgroup's subtree is left alone as if the
// programs were not attached (TCP direct, UDP the hooks would refuse
// delivered), a sibling stays governed; a cgroup exempted and released at
// run time switches both ways for the next connect; a take-over drops the
// previous agent's flag reasons and keeps the run-time ones until their
// owner replaces them; an exempt cgroup holding the attached one is refused.
func TestExemptCgroups(t *testing.T) {
	tp := newTopo(t)
	ex, gov := filepath.Join(tp.cg, "ex"), filepath.Join(tp.cg, "gov")
	nested := filepath.Join(ex, "a", "b")
	for _, d := range []string{nested, gov} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := tp.options()
	opts.ExemptCgroups = []string{ex}
	r := tp.attach(t, opts)
	ext4 := hostPort(extAddr4, tp.extPort)
	udp := hostPort(otherAddr4, 51820)
	tcp := job{Network: "tcp4", Addr: ext4, N: 2}
	quic := job{Network: "udp4", Addr: hostPort(otherAddr4, 443), N: 2}
	governed := func(what, cg string) {
		t.Helper()
		want(t, what+" tcp", runChild(t, cg, nil, tcp), "orig "+ext4)
		wantErr(t, what+" udp", runChild(t, cg, nil, job{Network: "udp4", Addr: udp, N: 2}), "EPERM")
	}
	exempt := func(what, cg string) {
		t.Helper()
		want(t, what+" tcp", runChild(t, cg, nil, tcp), "direct")
		want(t, what+" udp", runChild(t, cg, nil, job{Network: "udp4", Addr: udp, N: 2}), "echo 51820")
	}
	exempt("nested below the exempt cgroup", nested)
	want(t, "QUIC from the exempt cgroup", runChild(t, ex, nil, quic), "echo 443")
	governed("sibling", gov)
	governed("attached cgroup itself", tp.cg)

	govID, err := CgroupID(gov)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SetExempt(govID, gov, ExemptLabel, true); err != nil {
		t.Fatal(err)
	}
	exempt("sibling exempted at run time", gov)
	if err := r.SetExempt(govID, gov, ExemptLabel, false); err != nil {
		t.Fatal(err)
	}
	governed("sibling released", gov)
	if n := r.ExemptCounts(); n[ExemptFlag] != 1 || n[ExemptLabel] != 0 {
		t.Errorf("exempt counts %v: want 1 by flag, 0 by label", n)
	}
	if err := r.SetExempt(govID, gov, ExemptLabel, true); err != nil {
		t.Fatal(err)
	}
	st, err := r.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.SkippedExempt < 10 {
		t.Errorf("skipped_exempt %d, want >= 10", st.SkippedExempt)
	}

	// The next agent, without the flag: its reason goes, the label stays.
	r2 := tp.attach(t, tp.options())
	r.Close()
	governed("formerly flagged", nested)
	exempt("labelled before the take-over", gov)
	if why := r2.ExemptWhy(govID); why != ExemptLabel {
		t.Errorf("inherited reasons %v, want label", why)
	}
	if err := r2.ReplaceExempt(ExemptLabel, nil); err != nil {
		t.Fatal(err)
	}
	governed("label replaced by an empty set", gov)

	opts = tp.options()
	opts.ExemptCgroups = []string{tp.cg}
	if _, err := Attach(opts); err == nil || !strings.Contains(err.Error(), "holds the attached cgroup") {
		t.Errorf("exempting the attached cgroup: %v, want refused", err)
	}
	governed("after the refused attach", gov)
}
