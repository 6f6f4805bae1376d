package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/egressd/egressd/internal/freeport"
	"github.com/egressd/egressd/internal/kerneltest"
	"github.com/egressd/egressd/internal/mounts"
)

var build struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// binaryEnv names a prebuilt egressd to use instead of building one
// (scripts/kernel-matrix.sh sets it: its guests have no Go toolchain).
const binaryEnv = "EGRESSD_E2E_BINARY"

// egressdBinary builds cmd/egressd once per test process, or returns
// $EGRESSD_E2E_BINARY.
func egressdBinary(t *testing.T) string {
	t.Helper()
	build.once.Do(func() {
		if bin := os.Getenv(binaryEnv); bin != "" {
			build.bin = bin
			return
		}
		build.dir, build.err = os.MkdirTemp("", "egressd-e2e-bin-")
		if build.err != nil {
			return
		}
		build.bin = filepath.Join(build.dir, "egressd")
		out, err := exec.Command("go", "build", "-buildvcs=false", "-o", build.bin, "../cmd/egressd").CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}

// pinDir returns a fresh pin directory on bpffs; egressd --uninstall removes
// it on cleanup.
func pinDir(t *testing.T) string {
	t.Helper()
	fs, err := mounts.Find("bpf")
	if errors.Is(err, mounts.ErrNotMounted) {
		fs = "/sys/fs/bpf"
		err = unix.Mount("bpf", fs, "bpf", 0, "")
	}
	if err != nil {
		t.Fatalf("bpffs: %v", err)
	}
	dir := filepath.Join(fs, fmt.Sprintf("egressd-e2e-%d-%s", os.Getpid(), filepath.Base(t.Name())))
	t.Cleanup(func() {
		out, err := exec.Command(egressdBinary(t), "run", "--uninstall", "--pin-dir", dir).CombinedOutput()
		if err != nil {
			t.Errorf("egressd run --uninstall: %v\n%s", err, out)
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("pin directory %s left behind", dir)
		}
	})
	return dir
}

// agent is one running egressd.
type agent struct {
	cmd   *exec.Cmd
	admin string // host:port
	port  int    // proxy port
	out   *bytes.Buffer
	done  chan struct{}
	err   error // of Wait, once done is closed
}

// freePort returns a port for a server the test starts as a process.
func freePort(t *testing.T) int { return freeport.TCP(t) }

// startAgent starts egressd run in the host namespace (outside the test
// cgroup) with the world's files and waits until /readyz says ready.
// port 0 picks a free proxy port.
func startAgent(t *testing.T, w *world, port int, extra ...string) *agent {
	t.Helper()
	if port == 0 {
		port = freePort(t)
	}
	admin := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	a := startEgressdIn(t, w.agentCgroup, w.agentWrap, admin, agentArgs(w, port, admin, extra...)...)
	a.port = port
	return a
}

// agentArgs is the command line of startAgent.
func agentArgs(w *world, port int, admin string, extra ...string) []string {
	return append([]string{"run", "--rules", w.rulesFile, "--cgroup", w.cgroup,
		"--proxy-port", strconv.Itoa(port), "--admin", admin, "--pin-dir", w.pinDir,
		"--node-addr", node4.String(), "--node-addr", node6.String(),
		"--dns", dns4.String(), "--ca-file", w.caFile, "--shutdown-timeout", kerneltest.Scale(10 * time.Second).String(),
		// l7's default connect timeout, scaled (an emulated guest's TLS
		// handshakes take seconds).
		"--connect-timeout", kerneltest.Scale(5 * time.Second).String()}, extra...)
}

// startEgressd starts the egressd binary with args and waits until its
// admin server at admin says ready. It is killed on cleanup.
func startEgressd(t *testing.T, admin string, args ...string) *agent {
	t.Helper()
	return startEgressdIn(t, "", nil, admin, args...)
}

// startEgressdIn is startEgressd with the process placed in cgroup ("" for
// the test's own) and started through wrap (e.g. setpriv ...), if any.
func startEgressdIn(t *testing.T, cgroup string, wrap []string, admin string, args ...string) *agent {
	t.Helper()
	a := launchEgressd(t, cgroup, wrap, admin, args...)
	limit := kerneltest.Scale(15 * time.Second)
	deadline := time.Now().Add(limit)
	for {
		if code, _ := a.get("/readyz"); code == http.StatusOK {
			return a
		}
		select {
		case <-a.done:
			t.Fatalf("egressd %s exited at start: %v\n%s", args[0], a.err, a.output())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("egressd %s not ready after %v:\n%s", args[0], limit, a.output())
		}
	}
}

// launchEgressd starts egressd as startEgressdIn does, without waiting.
func launchEgressd(t *testing.T, cgroup string, wrap []string, admin string, args ...string) *agent {
	t.Helper()
	a := &agent{admin: admin, out: &bytes.Buffer{}, done: make(chan struct{})}
	argv := append(append(wrap[:len(wrap):len(wrap)], egressdBinary(t)), args...)
	a.cmd = kerneltest.Command(t, cgroup, nil, argv[0], argv[1:]...)
	a.cmd.Stdout = &lockedWriter{w: a.out}
	a.cmd.Stderr = a.cmd.Stdout
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		a.err = a.cmd.Wait()
		close(a.done)
	}()
	t.Cleanup(func() {
		a.signal(syscall.SIGKILL)
		<-a.done
		if t.Failed() {
			t.Logf("egressd %s output:\n%s", args[0], a.output())
		}
	})
	return a
}

func (a *agent) signal(sig os.Signal) {
	select {
	case <-a.done:
	default:
		_ = a.cmd.Process.Signal(sig) // by PID
	}
}

// wait waits (at most 20 s, scaled) for egressd to exit and returns its exit code.
func (a *agent) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-a.done:
	case <-time.After(kerneltest.Scale(20 * time.Second)):
		t.Fatalf("egressd did not exit:\n%s", a.output())
	}
	return a.cmd.ProcessState.ExitCode()
}

func (a *agent) output() string {
	lw := a.cmd.Stdout.(*lockedWriter)
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return a.out.String()
}

// get fetches an admin endpoint; code 0 when it can't be reached.
func (a *agent) get(path string) (int, string) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + a.admin + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func itoa(n int) string { return strconv.Itoa(n) }
