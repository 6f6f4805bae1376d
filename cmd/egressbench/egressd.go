package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/egressd/egressd/internal/mounts"
)

// startEgressd runs "egressd run" with n rules (proxy and admin ports given), redirecting a cgroup of its
// own (so that cases never redirect each other's load), and returns a target
// whose load generator starts in that cgroup and connects to dest as if
// egressd were not there.
func (e *env) startEgressd(ctx context.Context, name string, n, port, admin int, dest string) (*target, error) {
	bin := e.o.egressd
	if name == "egressd-b" {
		bin = e.o.egressdB
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("egressd binary: %w", err)
	}
	rulesFile, err := e.rulesFile(n)
	if err != nil {
		return nil, err
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
		"--admin", net.JoinHostPort("127.0.0.1", strconv.Itoa(admin)),
		"--dns", e.dnsAddr,
		"--ca-file", filepath.Join(e.dir, "ca.pem"),
		"--log-format", "json",
	}
	pinDir, err := benchPinDir(name)
	if err != nil {
		return nil, err
	}
	args = append(args, "--pin-dir", pinDir)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), e.o.env...)
	cmd.Stdout = logFile(e.dir, name+".log")
	cmd.Stderr = cmd.Stdout
	s, err := startServer(ctx, name, cmd, listen)
	if err != nil {
		return nil, err
	}
	e.onClose(func() {
		s.stop()
		// Pins outlive egressd by design; remove them.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		un := exec.CommandContext(ctx, bin, "run", "--uninstall", "--pin-dir", pinDir)
		if out, err := un.CombinedOutput(); err != nil {
			fmt.Fprintf(e.stderr, "egressbench: %s --uninstall: %v: %s\n", name, err, out)
		}
	})
	t := &target{name: name, addr: dest, cgroup: fd, proxy: s}
	switch name { // beyond the open-loop latency tests, which every case runs
	case "egressd", "egressd-b":
		t.h2, t.grpc = upstreamH2, upstreamGRPC
	case "egressd-https":
		t.tests = map[string]bool{"max-ka": true, "bulk-down": true, "bulk-up": true}
	case "egressd-100k":
		t.tests = map[string]bool{}
	}
	// The BPF programs may be attached a moment after the proxy listens
	// (seconds on a loaded machine). Until then the load goes direct and
	// the upstream answers 200 for every host, so wait for the proxy's own
	// sign: a denied host refused.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if got, err := runCheck(ctx, t); err == nil && got[loadHost] == 200 && got["evil.example.test"] == 403 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	return t, nil
}

// defaultBPFFS is where bpffs is mounted when none is, as egressd does.
const defaultBPFFS = "/sys/fs/bpf"

// benchPinDir is the pin directory of case name: a directory of its own on
// bpffs, which the cleanup removes with --uninstall. Never egressd's
// default <bpffs>/egressd: pins left there (links to the case's deleted
// cgroup, its maps) would be taken over by the next `egressd run` with
// defaults. When no bpffs is mounted, it mounts one where egressd would.
func benchPinDir(name string) (string, error) {
	fs, err := mounts.Find("bpf")
	if errors.Is(err, mounts.ErrNotMounted) {
		if err = os.MkdirAll(defaultBPFFS, 0o700); err == nil {
			err = unix.Mount("bpf", defaultBPFFS, "bpf", 0, "mode=0700")
		}
		if err != nil {
			return "", fmt.Errorf("pin directory: no bpffs mounted, and mounting one at %s: %w", defaultBPFFS, err)
		}
		fs = defaultBPFFS
	} else if err != nil {
		return "", fmt.Errorf("pin directory: %w", err)
	}
	return filepath.Join(fs, "egressbench-"+strconv.Itoa(os.Getpid())+"-"+name), nil
}

// rulesFile writes (once) a file of n rules in a directory of its own:
// egressd watches the directory of its rules file and re-reads the rules on
// any change there, so the logs written next to it would make it reload
// continuously (with 100,000 rules that alone costs most of a CPU).
func (e *env) rulesFile(n int) (string, error) {
	dir := filepath.Join(e.dir, "rules-"+strconv.Itoa(n))
	path := filepath.Join(dir, "rules.yaml")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := writeRules(path, n); err != nil {
		return "", fmt.Errorf("write rules: %w", err)
	}
	return path, nil
}
