package l7

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/freeport"
)

// squidBin is Debian's Squid (package squid).
const squidBin = "/usr/sbin/squid"

// Credentials the test Squid demands (basic auth).
const squidUser, squidPassword = "egressd", "pr0xy-secret"

// squidSource is the address Squid connects to upstreams from: a service
// that sees this peer was reached through Squid, never by egressd directly
// (the tests' Dial always connects from 127.0.0.1).
const squidSource = "127.0.0.2"

// squid is a real Squid started for one test on a loopback port, with its
// own configuration: basic auth required, CONNECT allowed to any port, no
// cache, names of hosts resolved to 127.0.0.1, nothing else.
type squid struct {
	addr string // 127.0.0.1:port
	dir  string
}

// startSquid starts Squid or skips (fails under EGRESSD_E2E=require) when
// it or openssl (for the password file) is missing. It is killed on cleanup.
func startSquid(t testing.TB, hosts ...string) *squid {
	t.Helper()
	for _, bin := range []string{squidBin, "openssl"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("EGRESSD_E2E") == "require" {
				t.Fatalf("%s is required (EGRESSD_E2E=require): %v", bin, err)
			}
			t.Skipf("%s not installed (Debian packages squid, openssl): %v", bin, err)
		}
	}
	// Squid drops to the proxy user: its directory must be reachable for it,
	// which t.TempDir's private parent is not.
	dir, err := os.MkdirTemp("", "egressd-squid-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)
	hash, err := exec.Command("openssl", "passwd", "-apr1", squidPassword).Output()
	if err != nil {
		t.Fatalf("openssl passwd: %v", err)
	}
	var hostsFile strings.Builder
	for _, h := range hosts {
		fmt.Fprintf(&hostsFile, "127.0.0.1 %s\n", h)
	}
	port := freePort(t)
	conf := fmt.Sprintf(`http_port 127.0.0.1:%d
pid_filename %[2]s/squid.pid
access_log stdio:%[2]s/access.log
cache_log %[2]s/cache.log
cache_store_log none
coredump_dir %[2]s
netdb_filename none
cache deny all
hosts_file %[2]s/hosts
dns_nameservers 127.0.0.1
tcp_outgoing_address %[3]s
shutdown_lifetime 0 seconds
auth_param basic program /usr/lib/squid/basic_ncsa_auth %[2]s/passwd
acl authed proxy_auth REQUIRED
http_access allow authed
http_access deny all
`, port, dir, squidSource)
	files := map[string]string{
		"squid.conf": conf,
		"hosts":      hostsFile.String(),
		"passwd":     squidUser + ":" + string(hash),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(squidBin, "-N", "-f", filepath.Join(dir, "squid.conf"))
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start squid: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	s := &squid{addr: fmt.Sprintf("127.0.0.1:%d", port), dir: dir}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		select {
		case <-exited:
			t.Fatalf("squid exited: %s\ncache.log:\n%s", out, s.file("cache.log"))
		default:
		}
		if c, err := net.Dial("tcp", s.addr); err == nil {
			c.Close()
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("squid not listening on %s after 20s: %s\ncache.log:\n%s", s.addr, out, s.file("cache.log"))
		}
	}
}

// url is the egress proxy URL of s, with the right or a wrong password.
func (s *squid) url(password string) *url.URL {
	return &url.URL{Scheme: "http", Host: s.addr, User: url.UserPassword(squidUser, password)}
}

func (s *squid) file(name string) string {
	b, _ := os.ReadFile(filepath.Join(s.dir, name))
	return string(b)
}

// waitLog waits until Squid's access log holds want (Squid writes a
// CONNECT's line when its tunnel closes), calling each poke (closing idle
// connections) before every look.
func (s *squid) waitLog(t testing.TB, want string, poke ...func()) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, f := range poke {
			f()
		}
		if strings.Contains(s.file("access.log"), want) {
			return
		}
	}
	t.Fatalf("squid access log lacks %q:\n%s", want, s.file("access.log"))
}

// freePort returns a port for a server the test starts as a process
// (Squid), or one where nothing listens.
func freePort(t testing.TB) int { return freeport.TCP(t) }
