package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os/exec"
	"regexp"
	"strconv"
	"time"

	"github.com/egressd/egressd/cmd/egressbench/internal/scenario"
	"github.com/egressd/egressd/internal/loadgen"
)

// runH2load runs h2load (Debian's nghttp2-client) with prior-knowledge h2c
// against the case's HTTP2 port, from the case's cgroup, and maps its summary
// onto a loadgen.Result. h2load prints no percentiles: only mean and max
// latency are filled in.
func runH2load(ctx context.Context, t *target, ts scenario.Test, d time.Duration) (*loadgen.Result, map[string]any, error) {
	if _, err := exec.LookPath("h2load"); err != nil {
		return nil, nil, fmt.Errorf("h2load is not installed (apt-get install nghttp2-client): %w", err)
	}
	secs := int(math.Ceil(d.Seconds()))
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "h2load", "-t", "1", "-c", strconv.Itoa(ts.Conns), "-m", "10",
		"-D", strconv.Itoa(secs), "-H", ":authority: "+loadHost, "http://"+t.h2+"/")
	inCgroup(cmd, t.cgroup)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, nil, fmt.Errorf("h2load: %w: %s", err, lastLines(out, 5))
	}
	res, err := parseH2load(out)
	if err != nil {
		return nil, nil, err
	}
	return res, map[string]any{"tool": "h2load", "clients": ts.Conns, "streams_per_client": 10}, nil
}

var (
	h2Finished = regexp.MustCompile(`finished in ([0-9.]+)s, ([0-9.]+) req/s`)
	h2Requests = regexp.MustCompile(`requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	h2Status   = regexp.MustCompile(`status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`)
	h2Time     = regexp.MustCompile(`time for request:\s+([0-9.]+)(us|ms|s)\s+([0-9.]+)(us|ms|s)\s+([0-9.]+)(us|ms|s)`)
)

func parseH2load(out []byte) (*loadgen.Result, error) {
	f, r, s, tm := h2Finished.FindSubmatch(out), h2Requests.FindSubmatch(out), h2Status.FindSubmatch(out), h2Time.FindSubmatch(out)
	if f == nil || r == nil || s == nil || tm == nil {
		return nil, fmt.Errorf("h2load output not understood: %s", lastLines(out, 8))
	}
	num := func(b []byte) int64 { n, _ := strconv.ParseInt(string(b), 10, 64); return n }
	res := &loadgen.Result{Mode: "closed", Status: map[string]int64{}, Errors: map[string]int64{}}
	res.Seconds, _ = strconv.ParseFloat(string(f[1]), 64)
	res.AchievedRate, _ = strconv.ParseFloat(string(f[2]), 64)
	for i, class := range []string{"2xx", "3xx", "4xx", "5xx"} {
		if n := num(s[i+1]); n > 0 {
			res.Status[class] = n
			res.Responses += n
			if class != "2xx" {
				res.Non2xx += n
			}
		}
	}
	for i, kind := range []string{"failed", "errored", "timeout"} {
		if n := num(r[i+3]); n > 0 {
			res.Errors[kind] = n
		}
	}
	res.ErrorCount = res.Errors["failed"] // h2load counts errored and timeout within failed
	res.Latency.Max = h2Micros(tm[3], tm[4])
	res.Latency.Mean = h2Micros(tm[5], tm[6])
	return res, nil
}

// h2Micros converts an h2load duration ("456us", "1.23ms", "2s") to µs.
func h2Micros(v, unit []byte) int64 {
	x, _ := strconv.ParseFloat(string(v), 64)
	switch string(unit) {
	case "ms":
		x *= 1e3
	case "s":
		x *= 1e6
	}
	return int64(x)
}

// lastLines returns the last n lines of b, for error messages.
func lastLines(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte(" | ")))
}
