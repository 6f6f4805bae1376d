package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/egressd/egressd/internal/loadgen"
)

// workerSpec is what the parent hands a worker process (as one JSON argument).
type workerSpec struct {
	Label    string        `json:"label"` // shown on the progress line
	Target   string        `json:"target"`
	Host     string        `json:"host"`
	Rate     float64       `json:"rate"`
	Conns    int           `json:"conns"`
	MaxConns int           `json:"max_conns"`
	Duration time.Duration `json:"duration"`
	Timeout  time.Duration `json:"timeout"`
	NewConn  bool          `json:"new_conn"`
	// Check: instead of load, send one request per whitelist-check host and
	// print {host: status}.
	Check bool `json:"check,omitempty"`
	// Hold: open Conns keep-alive connections, one request each, and keep
	// them open for Duration (the memory test).
	Hold bool `json:"hold,omitempty"`
	// GRPC: unary health checks on Conns connections × scenario.GRPCStreams
	// concurrent calls each, back to back, for Duration.
	GRPC bool `json:"grpc,omitempty"`
}

// checkHosts are asked once before load: two allowed, two that must get 403.
var checkHosts = []string{loadHost, exactHost, "evil.example.test", "allowed.test.evil.test"}

// workerCmd runs one load and prints its loadgen.Result as JSON on stdout,
// with a progress line on stderr. It runs as its own process so that the
// parent can place it in the redirected cgroup.
func workerCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) != 1 {
		return fmt.Errorf("worker takes one JSON argument: %w", errUsage)
	}
	var spec workerSpec
	if err := json.Unmarshal([]byte(args[0]), &spec); err != nil {
		return fmt.Errorf("worker spec: %w", err)
	}
	switch {
	case spec.Check:
		return json.NewEncoder(stdout).Encode(checkStatuses(ctx, spec))
	case spec.GRPC:
		res, err := grpcLoad(ctx, spec)
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(res)
	case spec.Hold:
		res, err := holdConns(ctx, spec)
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(res)
	}
	cfg := loadgen.Config{
		Target: spec.Target, Host: spec.Host, Rate: spec.Rate, Conns: spec.Conns,
		MaxConns: spec.MaxConns, Duration: spec.Duration, Timeout: spec.Timeout,
		NewConnPerRequest: spec.NewConn,
	}
	if isTerminal(os.Stderr) {
		cfg.Progress = func(s loadgen.Snapshot) {
			fmt.Fprintf(stderr, "\r\033[K  %-32s %5.1fs/%.0fs  %8d ok  %5d err  %4d dials",
				spec.Label, s.Elapsed.Seconds(), spec.Duration.Seconds(), s.Done, s.Errors, s.Conns)
		}
	}
	res, err := loadgen.Run(ctx, cfg)
	if cfg.Progress != nil {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(res)
}

// checkStatuses sends one GET per check host to spec.Target; a failed
// request has status 0.
func checkStatuses(ctx context.Context, spec workerSpec) map[string]int {
	d := &net.Dialer{Timeout: spec.Timeout}
	client := &http.Client{Timeout: spec.Timeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", spec.Target)
		},
		DisableKeepAlives: true,
	}}
	got := map[string]int{}
	for _, host := range checkHosts {
		got[host] = 0
		req, err := http.NewRequestWithContext(ctx, "GET", "http://"+host+"/", nil)
		if err != nil {
			continue
		}
		resp, err := client.Do(req)
		if err != nil {
			fmt.Fprintf(os.Stderr, "check %s via %s: %v\n", host, spec.Target, err)
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		got[host] = resp.StatusCode
	}
	return got
}

// runCheck runs the whitelist check from where the case's load would run.
func runCheck(ctx context.Context, t *target) (map[string]int, error) {
	spec := workerSpec{Label: "check " + t.name, Target: t.addr, Check: true, Timeout: 3 * time.Second}
	out, _, err := runWorkerRaw(ctx, spec, t.cgroup)
	if err != nil {
		return nil, err
	}
	got := map[string]int{}
	if err := json.Unmarshal(out, &got); err != nil {
		return nil, fmt.Errorf("check output: %w", err)
	}
	return got, nil
}

// runWorker starts "egressbench worker" (in cgroupFD's cgroup when it is not
// -1), bounded by the spec's duration plus a margin, and decodes its result.
//
// It also returns the CPU time the worker consumed: the generator's own cost.
func runWorker(ctx context.Context, spec workerSpec, cgroupFD int) (*loadgen.Result, time.Duration, error) {
	out, cpu, err := runWorkerRaw(ctx, spec, cgroupFD)
	if err != nil {
		return nil, 0, err
	}
	var res loadgen.Result
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, 0, fmt.Errorf("worker %s output: %w", spec.Label, err)
	}
	return &res, cpu, nil
}

// runWorkerRaw runs a worker and returns its standard output and CPU time.
func runWorkerRaw(ctx context.Context, spec workerSpec, cgroupFD int) ([]byte, time.Duration, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, 0, err
	}
	arg, _ := json.Marshal(spec)
	ctx, cancel := context.WithTimeout(ctx, spec.Duration+spec.Timeout+15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, self, "worker", string(arg))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	inCgroup(cmd, cgroupFD)
	if err := cmd.Run(); err != nil {
		return nil, 0, fmt.Errorf("worker %s: %w", spec.Label, err)
	}
	return out.Bytes(), cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

// inCgroup makes cmd start directly inside the cgroup open at fd (clone3
// CLONE_INTO_CGROUP), so not one of its connections escapes the redirect.
func inCgroup(cmd *exec.Cmd, fd int) {
	if fd < 0 {
		return
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
}

// isTerminal reports whether f is a terminal: the progress line is only
// drawn there (in CI logs it would be hundreds of lines).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
