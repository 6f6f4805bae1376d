package kerneltest

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestFixtures(t *testing.T) {
	Require(t)
	cg := Cgroup(t)
	if err := os.Mkdir(filepath.Join(cg, "pod"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A process left running in a child cgroup is killed on cleanup.
	if err := Command(t, filepath.Join(cg, "pod"), nil, "sleep", "100").Start(); err != nil {
		t.Fatal(err)
	}
	ns := Netns(t)
	_, nsIf := Veth(t, nil, []netip.Prefix{netip.MustParsePrefix("198.18.200.1/30"), netip.MustParsePrefix("2001:2:0:c8::1/64")},
		ns, []netip.Prefix{netip.MustParsePrefix("198.18.200.2/30"), netip.MustParsePrefix("2001:2:0:c8::2/64")})
	if nsIf == "" {
		t.Fatal("no interface name")
	}

	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", "[::]:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for _, addr := range []string{"198.18.200.2", "2001:2:0:c8::2"} {
		c, err := net.Dial("tcp", net.JoinHostPort(addr, strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("dial %s from host into netns: %v", addr, err)
		}
		c.Close()
	}

	// A child in the cgroup and the namespace sees both.
	var out bytes.Buffer
	cmd := Command(t, filepath.Join(cg, "pod"), ns, "sh", "-c", "cat /proc/self/cgroup; readlink /proc/self/ns/net")
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	nsLink, _ := os.Readlink("/proc/self/ns/net")
	if !strings.Contains(out.String(), filepath.Base(cg)+"/pod") {
		t.Errorf("child not in cgroup %s:\n%s", cg, out.String())
	}
	if strings.Contains(out.String(), nsLink) {
		t.Errorf("child still in the host netns %s:\n%s", nsLink, out.String())
	}
}
