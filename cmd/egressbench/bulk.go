package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/egressd/egressd/cmd/egressbench/internal/scenario"
	"github.com/egressd/egressd/internal/loadgen"
)

// runBulk moves one --bulk-size body through the case with curl (from the
// case's cgroup): a download of GET /bulk/SIZE (Content-Length, or chunked)
// or an upload to /sink (curl -T of a sparse file: Content-Length; from
// standard input: chunked). The result counts one response; its rate is
// bytes per second, so "proxy CPU per request" is the proxy's CPU for the
// whole body. The size that arrived is checked (curl's count for a
// download, the upstream's own for an upload).
func (e *env) runBulk(ctx context.Context, t *target, ts scenario.Test) (*loadgen.Result, map[string]any, error) {
	if _, err := exec.LookPath("curl"); err != nil {
		return nil, nil, fmt.Errorf("curl is not installed (apt-get install curl): %w", err)
	}
	size := e.o.bulkSize
	// Slow enough to be a failure: 10 MB/s.
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second+time.Duration(size/10e6)*time.Second)
	defer cancel()
	// The body goes to /dev/null (a download) or standard output (an
	// upload's answer: the upstream's count); -w's line follows.
	out := "-"
	if ts.Bulk == "down" {
		out = "/dev/null"
	}
	args := []string{"-sS", "--http1.1", "-H", "Host: " + loadHost, "-H", "Expect:", "-o", out,
		"-w", "\n%{http_code} %{size_download} %{time_total}"}
	var stdin *os.File
	switch {
	case ts.Bulk == "down":
		url := "http://" + t.addr + "/bulk/" + strconv.FormatInt(size, 10)
		if ts.Chunked {
			url += "?chunked"
		}
		args = append(args, url)
	default:
		file, err := e.bulkFile(size)
		if err != nil {
			return nil, nil, err
		}
		src := file
		if ts.Chunked {
			if stdin, err = os.Open(file); err != nil {
				return nil, nil, err
			}
			defer stdin.Close()
			src = "-"
		}
		args = append(args, "-T", src, "http://"+t.addr+"/sink")
	}
	cmd := exec.CommandContext(ctx, "curl", args...)
	cmd.Stdin = stdin
	inCgroup(cmd, t.cgroup)
	start := time.Now()
	stdout, err := cmd.Output()
	wall := time.Since(start)
	if err != nil {
		return nil, nil, fmt.Errorf("curl: %w: %s", err, lastLines(stdout, 3))
	}
	lines := strings.Split(strings.TrimSpace(string(stdout)), "\n")
	f := strings.Fields(lines[len(lines)-1])
	if len(f) != 3 {
		return nil, nil, fmt.Errorf("curl output not understood: %q", lastLines(stdout, 3))
	}
	code, _ := strconv.Atoi(f[0])
	down, _ := strconv.ParseFloat(f[1], 64)
	secs, _ := strconv.ParseFloat(f[2], 64)
	res := &loadgen.Result{Mode: "bulk", Conns: 1, Responses: 1, Seconds: secs,
		Status: map[string]int64{strconv.Itoa(code/100) + "xx": 1}, Errors: map[string]int64{}}
	if code/100 != 2 {
		res.Non2xx = 1
	}
	moved := down
	if ts.Bulk == "up" {
		moved = float64(size) // curl's size_upload counts chunk framing too
		if got := strings.TrimSpace(strings.Join(lines[:len(lines)-1], "\n")); got != strconv.FormatInt(size, 10) {
			res.Errors["short"] = 1
			res.ErrorCount = 1
			err = fmt.Errorf("the upstream received %q bytes of %d", got, size)
		}
	}
	if int64(moved) != size && err == nil {
		res.Errors["short"] = 1
		res.ErrorCount = 1
		err = fmt.Errorf("curl moved %.0f bytes of %d", moved, size)
	}
	if secs > 0 {
		res.AchievedRate = moved / secs
	}
	return res, map[string]any{"tool": "curl", "bytes": size, "chunked": ts.Chunked, "wall_s": wall.Seconds()}, err
}

// bulkFile is a sparse file of size bytes in the run directory (made once):
// what curl uploads. Reading it costs the kernel zeroing pages, the same for
// every case.
func (e *env) bulkFile(size int64) (string, error) {
	path := filepath.Join(e.dir, "bulk-"+strconv.FormatInt(size, 10))
	if fi, err := os.Stat(path); err == nil && fi.Size() == size {
		return path, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return "", err
	}
	return path, f.Close()
}
