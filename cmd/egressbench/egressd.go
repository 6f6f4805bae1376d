package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/egressd/egressd/internal/mounts"
)

// startEgressd runs "egressd run" with n rules, redirecting a cgroup of its
// own (so that cases never redirect each other's load), and returns a target
// whose load generator starts in that cgroup and connects to dest as if
// egressd were not there.
func (e *env) startEgressd(ctx context.Context, name string, n, port int, dest string) (*target, error) {
	if _, err := os.Stat(e.o.egressd); err != nil {
		return nil, fmt.Errorf("egressd binary: %w", err)
	}
	rulesFile := filepath.Join(e.dir, "rules-"+strconv.Itoa(n)+".yaml")
	if _, err := os.Stat(rulesFile); err != nil {
		if err := writeRules(rulesFile, n); err != nil {
			return nil, fmt.Errorf("write rules: %w", err)
		}
	}
	cg, fd, err := e.topo.addCgroup(name)
	if err != nil {
		return nil, err
	}
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args := []string{"run",
		"--rules", rulesFile,
		"--cgroup", cg,
		"--proxy-port", strconv.Itoa(port),
		"--admin", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+100)),
		"--dns", e.dnsAddr,
		"--ca-file", filepath.Join(e.dir, "ca.pem"),
		"--log-format", "json",
	}
	pinDir := ""
	if bpffs, err := mounts.Find("bpf"); err == nil {
		pinDir = filepath.Join(bpffs, "egressbench-"+strconv.Itoa(os.Getpid())+"-"+name)
		args = append(args, "--pin-dir", pinDir)
	}
	cmd := exec.Command(e.o.egressd, args...)
	if e.o.profile != "" {
		cmd.Env = append(os.Environ(), "EGRESSD_PPROF=1")
	}
	cmd.Stdout = logFile(e.dir, name+".log")
	cmd.Stderr = cmd.Stdout
	s, err := startServer(ctx, name, cmd, listen)
	if err != nil {
		return nil, err
	}
	e.onClose(func() {
		s.stop()
		if pinDir != "" { // pins outlive egressd by design; remove them
			un := exec.Command(e.o.egressd, "run", "--uninstall", "--pin-dir", pinDir)
			if out, err := un.CombinedOutput(); err != nil {
				fmt.Fprintf(e.stderr, "egressbench: %s --uninstall: %v: %s\n", name, err, out)
			}
		}
	})
	t := &target{name: name, addr: dest, cgroup: fd, proxy: s}
	switch name { // beyond the open-loop latency tests, which every case runs
	case "egressd-https":
		t.tests = map[string]bool{"max-ka": true}
	case "egressd-100k":
		t.tests = map[string]bool{}
	}
	// The BPF programs may be attached a moment after the proxy listens.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if got, err := runCheck(ctx, t); err == nil && got[loadHost] == 200 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	return t, nil
}
