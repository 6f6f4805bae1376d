package redirect

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/egressd/egressd/internal/kerneltest"
	"github.com/egressd/egressd/internal/mounts"
)

// The kernel tests run their clients as children (this test binary
// re-executed) placed in the test cgroup and network namespace: the test
// process itself must stay outside the cgroup.
const childEnv = "EGRESSD_REDIRECT_CHILD"

// job is what a child does: N connects (or datagrams) to Addr.
type job struct {
	Network string // tcp4, tcp6, udp4, udp6; tcp6-mapped (IPv4 through an IPv6 socket); tcp4-fastopen (TFO sendto); mptcp4; tcp4-iouring (IORING_OP_CONNECT); tcp4-abandon (connect, reset at once)
	Addr    string
	N       int
	Mark    uint32        // SO_MARK on the socket
	For     time.Duration // with N: keep going until both are reached
	Unconn  bool          // UDP: unconnected socket, WriteTo (sendmsg hook)
	Payload string        // sent after connecting (TCP) or as the datagram (UDP, Socket); "": "ping\n" for UDP
	// Socket: instead of the net package, one datagram from a socket of
	// this kind (sockets_test.go): ping4, ping6, udplite4, udplite6 (Unconn
	// too), raw4, sctp4; udp4-connected-sendto (connected to Addr, then
	// sendto Then); udp6-inet (an IPv6 socket's sendto with an AF_INET
	// address), udp6-mapped (sendto Addr v4-mapped); packet4 (an IPv4/UDP packet written whole through
	// an AF_PACKET socket, guard_test.go); netlink and unix (only creates
	// the socket). The reply is "sent".
	Socket string
	// Dev, DevMAC: for Socket "packet4", the interface and the MAC address
	// the frame is written to.
	Dev, DevMAC string
	// Via: for the source-routed kinds (udp6-srh, tcp6-srh, udp4-lsrr),
	// the first hop named in the routing header or IP option.
	Via string
	// Then: for Socket "udp4-connected-sendto", where the datagram is sent
	// (sendto) after the socket was connected to Addr.
	Then string

	// DefaultPins: instead of connecting, unmount bpffs (the child runs
	// in a private mount namespace), Attach to this cgroup with the
	// default PinDir, then Uninstall; replies say what was seen.
	DefaultPins string
}

// outcome tallies what the connections answered (the first line the
// server wrote) and how they failed.
type outcome struct {
	Replies   map[string]int
	Errors    map[string]int
	NsPerConn float64
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		var j job
		if err := json.Unmarshal([]byte(spec), &j); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		var o outcome
		if j.DefaultPins != "" {
			o = j.defaultPins()
		} else {
			o = j.run()
		}
		_ = json.NewEncoder(os.Stdout).Encode(o)
		os.Exit(0)
	}
	code := m.Run()
	removeChildBinary()
	os.Exit(code)
}

func (j job) run() outcome {
	o := outcome{Replies: map[string]int{}, Errors: map[string]int{}}
	start := time.Now()
	n := 0
	for ; n < j.N || time.Since(start) < j.For; n++ {
		reply, err := j.once()
		if err != nil {
			o.Errors[errName(err)]++
			continue
		}
		o.Replies[reply]++
	}
	o.NsPerConn = float64(time.Since(start).Nanoseconds()) / float64(max(n, 1))
	return o
}

func (j job) once() (string, error) {
	if j.Via != "" {
		return j.sourceRouted()
	}
	if j.Socket != "" {
		return j.socket()
	}
	d := net.Dialer{Timeout: kerneltest.Scale(3 * time.Second), Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if j.Mark != 0 {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(j.Mark))
			}
		})
		return errors.Join(err, serr)
	}}
	var c net.Conn
	var err error
	switch {
	case j.Network == "tcp6-mapped":
		c, err = dialMapped(j.Addr)
	case j.Network == "tcp4-fastopen":
		c, err = dialFastOpen(j.Addr)
	case j.Network == "tcp4-abandon":
		return abandon(j.Addr)
	case j.Network == "tcp4-iouring":
		c, err = dialIOUring(j.Addr)
	case j.Unconn:
		c, err = j.sendTo(d)
	case j.Network == "mptcp4":
		d.SetMultipathTCP(true)
		c, err = d.Dial("tcp4", j.Addr)
	default:
		c, err = d.Dial(j.Network, j.Addr)
	}
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(kerneltest.Scale(3 * time.Second)))
	payload := j.Payload
	if payload == "" && strings.HasPrefix(j.Network, "udp") {
		payload = "ping\n"
	}
	if payload != "" && !j.Unconn {
		if _, err := c.Write([]byte(payload)); err != nil {
			return "", err
		}
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// sendTo sends from an unconnected UDP socket and returns it for reading
// the echo.
func (j job) sendTo(d net.Dialer) (net.Conn, error) {
	lc := net.ListenConfig{Control: d.Control}
	pc, err := lc.ListenPacket(context.Background(), j.Network, "")
	if err != nil {
		return nil, err
	}
	ua, err := net.ResolveUDPAddr(j.Network, j.Addr)
	if err == nil {
		_, err = pc.WriteTo([]byte(cmpOr(j.Payload, "ping\n")), ua)
	}
	if err != nil {
		pc.Close()
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// dialRaw makes a TCP socket of family, has connect connect it to addr its
// own way, and returns it as a net.Conn.
func dialRaw(addr string, family int, connect func(fd int, ap netip.AddrPort) error) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "raw")
	defer f.Close()
	if err := connect(fd, ap); err != nil {
		return nil, err
	}
	return net.FileConn(f)
}

// dialMapped connects an IPv6 socket to an IPv4 address in its v4-mapped
// form, which Go's dialer does not do.
func dialMapped(addr string) (net.Conn, error) {
	return dialRaw(addr, unix.AF_INET6, func(fd int, ap netip.AddrPort) error {
		return unix.Connect(fd, &unix.SockaddrInet6{Port: int(ap.Port()), Addr: netip.AddrFrom4(ap.Addr().As4()).As16()})
	})
}

// dialFastOpen connects with TCP Fast Open: sendto(MSG_FASTOPEN) on an
// unconnected socket, no connect call.
func dialFastOpen(addr string) (net.Conn, error) {
	return dialRaw(addr, unix.AF_INET, func(fd int, ap netip.AddrPort) error {
		sa := &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
		return unix.Sendto(fd, []byte("hello\n"), unix.MSG_FASTOPEN, sa)
	})
}

// abandon starts a connect and resets it at once (SO_LINGER 0), before
// the proxy can accept it: the churn that must not cost others their
// original destinations.
func abandon(addr string) (string, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return "", err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
		return "", err
	}
	err = unix.Connect(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()})
	if err != nil && err != unix.EINPROGRESS {
		return "", err
	}
	return "abandoned", nil
}

// errName reduces an error to its errno where there is one.
func errName(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return "timeout"
	}
	return err.Error()
}

// runChild runs j in cgroup (or none) and netns (nil: host) and returns
// its outcome.
func runChild(t testing.TB, cgroup string, ns *kerneltest.NS, j job, wrapper ...string) outcome {
	t.Helper()
	return startChild(t, cgroup, ns, j, wrapper...)()
}

// startChild starts j like runChild, under the wrapper command if any
// (e.g. unshare); the returned func waits for its outcome.
func startChild(t testing.TB, cgroup string, ns *kerneltest.NS, j job, wrapper ...string) (wait func() outcome) {
	t.Helper()
	spec, _ := json.Marshal(j)
	argv := append(wrapper, childBinary(t), "-test.run=^$")
	cmd := kerneltest.Command(t, cgroup, ns, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), childEnv+"="+string(spec))
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("child %+v: %v", j, err)
	}
	return func() outcome {
		t.Helper()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child %+v: %v\n%s", j, err, stderr.String())
		}
		var o outcome
		if err := json.Unmarshal([]byte(stdout.String()), &o); err != nil {
			t.Fatalf("child %+v: %v: %q", j, err, stdout.String())
		}
		return o
	}
}

// defaultPins checks Attach's defaults where no bpffs is mounted.
func (j job) defaultPins() outcome {
	o := outcome{Replies: map[string]int{}, Errors: map[string]int{}}
	fail := func(what string, err error) outcome {
		o.Errors[what+": "+err.Error()]++
		return o
	}
	if fs, err := mounts.Find("bpf"); err == nil {
		if err := unix.Unmount(fs, unix.MNT_DETACH); err != nil {
			return fail("unmount bpffs", err)
		}
	}
	if _, err := mounts.Find("bpf"); err == nil {
		return fail("bpffs", errors.New("still mounted"))
	}
	r, err := Attach(Options{Cgroups: []string{j.DefaultPins}})
	if err != nil {
		return fail("attach", err)
	}
	loaded := loadedHooks(r)
	r.Close()
	fs, err := mounts.Find("bpf")
	if err != nil {
		return fail("bpffs after attach", err)
	}
	links, err := os.ReadDir(filepath.Join(fs, "egressd", "links"))
	if err != nil {
		return fail("links", err)
	}
	o.Replies[fmt.Sprintf("%s: %d links, %d hooks", fs, len(links), loaded)]++
	if err := Uninstall(""); err != nil {
		return fail("uninstall", err)
	}
	if _, err := os.Stat(filepath.Join(fs, "egressd")); !errors.Is(err, os.ErrNotExist) {
		return fail("after uninstall", fmt.Errorf("pins left: %v", err))
	}
	return o
}
