package redirect

import (
	"net/netip"
	"testing"

	"github.com/egressd/egressd/internal/kerneltest"
)

func hostPort(a netip.Addr, port uint16) string {
	return netip.AddrPortFrom(a, port).String()
}

// want asserts that every connection of o answered want.
func want(t *testing.T, what string, o outcome, want string) {
	t.Helper()
	if len(o.Errors) > 0 || len(o.Replies) != 1 || o.Replies[want] == 0 {
		t.Errorf("%s: got replies %v errors %v; want all %q", what, o.Replies, o.Errors, want)
	}
}

// wantErr asserts that every connection of o failed with errno.
func wantErr(t *testing.T, what string, o outcome, errno string) {
	t.Helper()
	if len(o.Replies) > 0 || len(o.Errors) != 1 || o.Errors[errno] == 0 {
		t.Errorf("%s: got replies %v errors %v; want all %s", what, o.Replies, o.Errors, errno)
	}
}

func TestRedirect(t *testing.T) {
	tp := newTopo(t)
	r := tp.attach(t, tp.options())
	ext4 := hostPort(extAddr4, tp.extPort)
	ext6 := hostPort(extAddr6, tp.extPort)

	tests := []struct {
		name string
		pod  bool
		j    job
		want string
	}{
		{"ipv4", false, job{Network: "tcp4", Addr: ext4}, "orig " + ext4},
		{"ipv6", false, job{Network: "tcp6", Addr: ext6}, "orig " + ext6},
		{"v4-mapped", false, job{Network: "tcp6-mapped", Addr: ext4}, "orig " + ext4},
		{"pod ipv4", true, job{Network: "tcp4", Addr: ext4}, "orig " + ext4},
		{"pod ipv6", true, job{Network: "tcp6", Addr: ext6}, "orig " + ext6},
		{"pod v4-mapped", true, job{Network: "tcp6-mapped", Addr: ext4}, "orig " + ext4},
		{"marked", false, job{Network: "tcp4", Addr: ext4, Mark: DefaultMark}, "direct"},
		{"loopback", false, job{Network: "tcp4", Addr: tp.loopback.String()}, "direct"},
		{"excluded ipv4", false, job{Network: "tcp4", Addr: hostPort(excludedAddr4, tp.extPort)}, "direct"},
		{"excluded ipv6", false, job{Network: "tcp6", Addr: hostPort(excludedAddr6, tp.extPort)}, "direct"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.j.N = 3
			var ns *kerneltest.NS
			if tt.pod {
				ns = tp.pod
			}
			want(t, tt.name, runChild(t, tp.cg, ns, tt.j), tt.want)
		})
	}
	t.Run("outside cgroup", func(t *testing.T) {
		want(t, "outside", runChild(t, "", nil, job{Network: "tcp4", Addr: ext4, N: 3}), "direct")
	})
	s, err := r.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stats: %+v", s)
	if s.Redirected != 18 || s.Tracked != 18 || s.SkippedMark != 3 || s.SkippedLoopback != 3 || s.SkippedExcluded != 6 {
		t.Errorf("stats %+v: want 18 redirected and tracked, 3 marked, 3 loopback, 6 excluded", s)
	}
}
