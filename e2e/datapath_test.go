package e2e

import (
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/kerneltest"
	"github.com/egressd/egressd/internal/upstream"
)

// TestE2EReadyzAfterUninstall: an external `egressd run --uninstall`
// detaches the running agent's programs; its /readyz then says so (503
// with the reason) instead of looking healthy with nothing attached.
func TestE2EReadyzAfterUninstall(t *testing.T) {
	w := newWorld(t)
	a := startAgent(t, w, 0)
	if code, body := a.get("/readyz"); code != 200 {
		t.Fatalf("/readyz before: %d %q", code, body)
	}
	out, err := exec.Command(egressdBinary(t), "run", "--uninstall", "--pin-dir", w.pinDir).CombinedOutput()
	if err != nil {
		t.Fatalf("egressd run --uninstall: %v\n%s", err, out)
	}
	code, body := a.get("/readyz")
	if code != 503 || !strings.Contains(body, "detached") {
		t.Errorf("/readyz after an external uninstall: %d %q, want 503 naming the detach", code, body)
	}
	if code, _ := a.get("/healthz"); code != 200 {
		t.Errorf("/healthz after an external uninstall: %d, want 200 (the process is alive)", code)
	}
}

// TestE2EDatapathFlags: from the attached cgroup (host network, like a
// hostNetwork pod), with --dial=original: UDP leaves only for the --dns
// server's port 53 and an --allow-udp destination; TCP to port 53 of a
// non-server, a node service's port and 0.0.0.0 never reach anything but
// the proxy's rules.
func TestE2EDatapathFlags(t *testing.T) {
	w := newWorld(t)
	allowed := netip.AddrPortFrom(dns4, 5353)
	got := udpListen(t, w, allowed)
	udpListen(t, w, netip.AddrPortFrom(dns4, 5354))
	ln, err := net.Listen("tcp", net.JoinHostPort(node4.String(), "0")) // a service on the node address
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	nodeSvc, accepted := ln.Addr().String(), upstream.CountAccepts(ln)
	a := startAgent(t, w, 0, "--dial", "original", "--allow-udp", allowed.String(), "--deny-udp")
	if !strings.Contains(a.output(), "--deny-udp is deprecated") {
		t.Errorf("no deprecation warning for --deny-udp:\n%s", a.output())
	}

	for _, u := range []struct {
		to   netip.AddrPort
		want bool
	}{
		{allowed, true},
		{netip.AddrPortFrom(dns4, 53), true},      // --dns is a DNS server by default
		{netip.AddrPortFrom(dns4, 5354), false},   // not allowed
		{netip.AddrPortFrom(decoy4, 53), false},   // port 53, not a DNS server
		{netip.AddrPortFrom(dns4, 443), false},    // QUIC
		{netip.AddrPortFrom(decoy6, 5353), false}, // the port, elsewhere
	} {
		if ok := sendUDP(t, w, u.to, "datagram"); ok != u.want {
			t.Errorf("UDP to %v sent: %v, want %v", u.to, ok, u.want)
		}
	}
	select {
	case from := <-got:
		if !from.IsValid() {
			t.Error("the allowed datagram did not arrive")
		}
	case <-time.After(5 * time.Second):
		t.Error("the allowed datagram did not arrive")
	}

	for _, c := range []struct {
		name string
		args []string
	}{
		{"TCP/53, not a DNS server", at("a.allowed.test", 53, decoy4)},
		{"node service", []string{"-H", "Host: a.allowed.test", "http://" + nodeSvc + "/"}},
		{"0.0.0.0", at("a.allowed.test", portHTTP, netip.IPv4Unspecified())},
	} {
		r := curl(t, w, nil, c.args...)
		if r.code == 200 {
			t.Errorf("%s: 200, want the proxy's refusal or a failed connect\n%s", c.name, r.body)
		}
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("the node service accepted %d connections from the cgroup, want 0", n)
	}
	assertNoBypass(t, w)
}

// udpListen receives on at in the external namespace; the channel gets the
// sender of the first datagram.
func udpListen(t *testing.T, w *world, at netip.AddrPort) <-chan netip.AddrPort {
	t.Helper()
	var pc net.PacketConn
	if err := w.ext.Do(func() (err error) { pc, err = net.ListenPacket("udp", at.String()); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	got := make(chan netip.AddrPort, 1)
	go func() {
		buf := make([]byte, 512)
		_, from, err := pc.ReadFrom(buf)
		if err == nil {
			got <- from.(*net.UDPAddr).AddrPort()
		}
	}()
	return got
}

// sendUDP sends one datagram from the test cgroup (bash's /dev/udp:
// connect and write) and reports whether the kernel let it go.
func sendUDP(t *testing.T, w *world, to netip.AddrPort, payload string) bool {
	t.Helper()
	cmd := kerneltest.Command(t, w.cgroup, nil, "bash", "-c",
		"echo "+payload+" > /dev/udp/"+to.Addr().String()+"/"+itoa(int(to.Port())))
	return cmd.Run() == nil
}
